"""The simulator's Responses + Conversations API through the official SDK (sync and async): what the
gateway's Assistants facade calls upstream now that the Assistants API is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.simulator.responses_recordings import load_exchanges

from .conftest import parse_events

AUTH = {"Authorization": "Bearer sk-test"}
TOOL = {"type": "function", "name": "lookup_capital", "parameters": {"type": "object", "properties": {}}}


def recorded(stem: str, index: int = 0) -> Any:
    """A packaged recording's exchange: the expected answer of a replay."""
    return load_exchanges()[stem][index]


async def test_conversations_and_their_items(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "first"}], metadata={"team": "a"}
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"team": "a"}
    assert (await sdk.conversations.retrieve(conversation.id)).created_at == conversation.created_at
    updated = await sdk.conversations.update(conversation.id, metadata={"team": "b"})
    assert updated.metadata == {"team": "b"} == (await sdk.conversations.retrieve(conversation.id)).metadata

    added = await sdk.conversations.items.create(
        conversation.id,
        items=[{"type": "message", "role": "user", "content": text} for text in ("second", "third", "fourth")],
    )
    assert [item.type for item in added.data] == ["message"] * 3 and added.first_id == added.data[0].id
    assert all(item.id.startswith("msg_") for item in added.data)

    page = await sdk.conversations.items.list(conversation.id, order="asc", limit=2)
    assert [i.content[0].text for i in page.data] == ["first", "second"] and page.has_more  # type: ignore[union-attr]
    assert page.last_id == page.data[1].id
    rest = await sdk.conversations.items.list(conversation.id, order="asc", after=page.data[1].id)
    assert [i.content[0].text for i in rest.data] == ["third", "fourth"] and not rest.has_more  # type: ignore[union-attr]
    newest = await sdk.conversations.items.list(conversation.id, limit=1)  # desc by default
    assert newest.data[0].content[0].text == "fourth"  # type: ignore[union-attr]
    every = [item.id async for item in sdk.conversations.items.list(conversation.id, order="asc", limit=1)]
    assert len(every) == 4  # the SDK's auto-pagination follows the cursor

    item = await sdk.conversations.items.retrieve(page.data[0].id, conversation_id=conversation.id)
    assert (item.type, item.role, item.status) == ("message", "user", "completed")  # type: ignore[union-attr]
    after_delete = await sdk.conversations.items.delete(page.data[0].id, conversation_id=conversation.id)
    assert after_delete.id == conversation.id  # the real API answers with the conversation
    assert len((await sdk.conversations.items.list(conversation.id)).data) == 3
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.items.retrieve(page.data[0].id, conversation_id=conversation.id)

    assert (await sdk.conversations.delete(conversation.id)).deleted
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.conversations.retrieve(conversation.id)
    assert missing.value.body == {  # OpenAI's envelope
        "message": f"Conversation with id '{conversation.id}' not found.", "type": "invalid_request_error",
        "param": None, "code": None,
    }  # fmt: skip


async def test_a_streamed_text_response_replays_its_recording_with_fresh_ids(
    base_url: str, simulator_state: Any
) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)  # the sync SDK
    expected = recorded("openai_conversation_id_streaming_provider_details")

    def run() -> tuple[Any, list[Any], Any]:
        conversation = client.conversations.create()
        stream = client.responses.create(
            model="gpt-4.1", conversation={"id": conversation.id}, input="Reply exactly: streamed", stream=True,
            instructions="Follow the user instructions exactly.", metadata={"ticket": "7"},
        )  # fmt: skip
        events = list(stream)
        return conversation, events, client.conversations.items.list(conversation.id, order="asc")

    conversation, events, items = await asyncio.to_thread(run)
    assert [e.type for e in events] == [f.name for f in expected.recorded_frames()]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "streamed"
    done = events[-1].response
    assert done.id.startswith("resp_") and done.id != expected.final()["id"]
    assert {e.response.id for e in events if hasattr(e, "response")} == {done.id}  # one id throughout
    assert {e.response.model for e in events if hasattr(e, "response")} == {"gpt-4.1-2025-04-14"}
    assert done.conversation is not None and done.conversation.id == conversation.id
    assert (done.instructions, done.metadata, done.store) == (
        "Follow the user instructions exactly.",
        {"ticket": "7"},
        True,
    )
    usage = done.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (21, 3, 24)
    assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (0, 0)
    assert [(i.type, i.role) for i in items.data] == [("message", "user"), ("message", "assistant")]  # type: ignore[union-attr]
    assert items.data[1].id == done.output[0].id
    [sent] = [r for r in simulator_state.requests if (r.method, r.path) == ("POST", "/v1/responses")]
    assert orjson.loads(sent.body)["conversation"] == {"id": conversation.id}  # the exact request, kept
    client.close()


async def test_a_plain_response_is_the_recorded_simple_answer(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-4o", input="What is the capital of France?")
    expected = recorded("openai_responses_model_simple_response").final()
    assert response.output_text == expected["output"][0]["content"][0]["text"]
    assert response.usage is not None and response.usage.model_dump(exclude_unset=True) == expected["usage"]
    assert response.model == expected["model"] and response.status == "completed"
    assert (await sdk.responses.create(model="gpt-4", input="hi")).model == "gpt-4"  # not the recorded gpt-4o
    items = await sdk.responses.input_items.list(response.id)
    assert [(i.type, i.content[0].text) for i in items.data] == [("message", "What is the capital of France?")]  # type: ignore[union-attr]
    assert (await sdk.responses.retrieve(response.id)).id == response.id
    assert (await sdk.responses.delete(response.id)) is None
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(response.id)


async def test_a_function_call_and_its_continuation_in_one_conversation(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create()
    first = await sdk.responses.create(
        model="gpt-4o",
        conversation=conversation.id,
        input="What is the capital of France?",
        tools=[TOOL],  # type: ignore[list-item]
    )
    [call] = first.output
    assert call.type == "function_call" and call.name == "lookup_capital"  # the request's tool, recorded arguments
    assert call.arguments == '{"country":"France"}' and call.call_id.startswith("call_")
    assert first.tools[0].name == "lookup_capital"  # type: ignore[union-attr]

    stream = await sdk.responses.create(
        model="gpt-4o", conversation=conversation.id, tools=[TOOL], stream=True,  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Paris"}],
    )  # fmt: skip
    events = [event async for event in stream]
    second = events[-1].response
    assert "Paris" in second.output_text and second.id != first.id
    assert second.output[0].id != first.output[0].id  # fresh item ids per response
    assert (first.usage.total_tokens, second.usage.total_tokens) == (  # type: ignore[union-attr]
        recorded("openai_responses_stream", 0).final()["usage"]["total_tokens"],
        recorded("openai_responses_stream", 1).final()["usage"]["total_tokens"],
    )
    items = await sdk.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == ["message", "function_call", "function_call_output", "message"]
    assert [i.id for i in items.data][1] == call.id and items.data[2].call_id == call.call_id  # type: ignore[union-attr]


async def test_background_mode_is_polled_to_completion(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create()
    queued = await sdk.responses.create(model="gpt-4.1", conversation=conversation.id, input="hi", background=True)
    assert (queued.status, queued.background, queued.usage, queued.output) == ("queued", True, None, [])
    assert len((await sdk.conversations.items.list(conversation.id)).data) == 1  # the input; no answer yet
    seen = [await sdk.responses.retrieve(queued.id) for _ in range(3)]
    assert [r.status for r in seen] == ["in_progress", "completed", "completed"]
    assert seen[-1].output_text == "streamed" and seen[-1].usage.total_tokens == 24  # type: ignore[union-attr]
    items = await sdk.conversations.items.list(conversation.id, order="asc")
    assert [i.type for i in items.data] == ["message", "message"] and items.data[1].id == seen[-1].output[0].id


async def test_the_recorded_background_polls_replay_as_recorded(sdk: openai.AsyncOpenAI) -> None:
    expected = recorded("background_mode_vcr")
    replay = {"X-Simulator-Replay": "background_mode_vcr"}
    queued = await sdk.responses.create(model="gpt-4o", input="What is 2 + 2?", background=True, extra_headers=replay)
    assert queued.model_dump(exclude_unset=True) == expected.body
    polls = [(await sdk.responses.retrieve(queued.id)).model_dump(exclude_unset=True) for _ in expected.polls]
    assert polls == list(expected.polls)


async def test_a_background_response_can_be_cancelled(sdk: openai.AsyncOpenAI) -> None:
    queued = await sdk.responses.create(model="gpt-4.1", input="hi", background=True)
    assert (await sdk.responses.cancel(queued.id)).status == "cancelled"
    assert (await sdk.responses.retrieve(queued.id)).status == "cancelled"  # it no longer moves on
    assert (await sdk.responses.cancel(queued.id)).status == "cancelled"
    plain = await sdk.responses.create(model="gpt-4.1", input="hi")
    with pytest.raises(openai.BadRequestError, match="background=true"):
        await sdk.responses.cancel(plain.id)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.cancel("resp_unknown")


async def test_input_tokens_are_counted_deterministically(sdk: openai.AsyncOpenAI) -> None:
    counted = await sdk.responses.input_tokens.count(model="gpt-4o", input="abcd" * 10, instructions="1234")
    assert (counted.object, counted.input_tokens) == ("response.input_tokens", 11)  # 44 characters / 4
    conversation = await sdk.conversations.create(items=[{"type": "message", "role": "user", "content": "x" * 40}])
    grown = await sdk.responses.input_tokens.count(model="gpt-4o", conversation=conversation.id, input="abcd")
    assert grown.input_tokens == 11  # the conversation's items count too
    assert (await sdk.responses.input_tokens.count(model="gpt-4o")).input_tokens == 1


async def test_file_search_replays_its_recording_plain_and_streamed(sdk: openai.AsyncOpenAI) -> None:
    tools: Any = [{"type": "file_search", "vector_store_ids": ["vs_1"]}]
    expected = recorded("openai_responses_model_file_search_tool").final()
    response = await sdk.responses.create(model="gpt-4o", input="What is the capital of France?", tools=tools)
    assert [item.type for item in response.output] == ["file_search_call", "message"]
    assert response.output_text == expected["output"][1]["content"][0]["text"]
    assert response.usage is not None and response.usage.model_dump(exclude_unset=True) == expected["usage"]
    assert response.tools[0].model_dump(exclude_none=True)["vector_store_ids"] == ["vs_1"]

    stream = await sdk.responses.create(model="gpt-4o", input="Again?", tools=tools, stream=True)
    events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[3:6] == ["response.file_search_call.in_progress", "response.file_search_call.searching",
                          "response.file_search_call.completed"]  # fmt: skip
    assert types[-1] == "response.completed" and [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == expected["output"][1]["content"][0]["text"] == events[-1].response.output_text


async def test_code_interpreter_replays_the_code_execution_stream(sdk: openai.AsyncOpenAI) -> None:
    expected = recorded("openai_responses_thinking_with_code_execution_tool_stream")
    stream = await sdk.responses.create(
        model="gpt-5", input="what's 123456 to the power of 123?", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
        stream=True,
    )  # fmt: skip
    events = [event async for event in stream]
    assert [e.type for e in events] == [f.name for f in expected.recorded_frames()]
    done = events[-1].response
    assert [item.type for item in done.output] == [i["type"] for i in expected.final()["output"]]
    assert "code_interpreter_call" in {item.type for item in done.output}
    assert done.usage is not None and done.usage.model_dump(exclude_unset=True) == expected.final()["usage"]
    assert done.usage.output_tokens_details.reasoning_tokens > 0
    code = "".join(e.delta for e in events if e.type == "response.code_interpreter_call_code.delta")
    assert "123456" in code
    plain = await sdk.responses.create(
        model="gpt-5", input="again", tools=[{"type": "code_interpreter", "container": {"type": "auto"}}]
    )
    assert plain.output_text == done.output_text


STREAMS = [(e.stem, e.index) for exchanges in load_exchanges().values() for e in exchanges if e.stream is not None]
ANSWERS = [(e.stem, e.index) for exchanges in load_exchanges().values() for e in exchanges if e.stream is None]


def test_every_packaged_cassette_is_replayable() -> None:
    assert {stem for stem, _ in STREAMS + ANSWERS} == set(load_exchanges()) and len(load_exchanges()) == 11


@pytest.mark.parametrize(("stem", "index"), STREAMS)
async def test_a_forced_stream_replays_the_recorded_bytes(http: TestClient, stem: str, index: int) -> None:
    expected = _cassette_body(stem, index)
    response = await http.post(
        "/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": True},
        headers={**AUTH, "X-Simulator-Replay": f"{stem}#{index}"},
    )  # fmt: skip
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
    assert await response.read() == expected.encode()


@pytest.mark.parametrize(("stem", "index"), ANSWERS)
async def test_a_forced_answer_replays_the_recorded_body(http: TestClient, stem: str, index: int) -> None:
    expected = _cassette_answer(stem, index)
    response = await http.post(
        "/v1/responses",
        json={"model": "gpt-4o", "input": "hi"},
        headers={**AUTH, "X-Simulator-Replay": f"{stem}#{index}"},
    )
    assert response.status == expected["status"]["code"]
    assert await response.json() == expected["parsed_body"]


async def test_a_recorded_json_answer_streams_as_the_api_streams_it(http: TestClient) -> None:
    response = await http.post(
        "/v1/responses", json={"model": "gpt-4o", "input": "hi", "stream": True},
        headers={**AUTH, "X-Simulator-Replay": "openai_responses_model_simple_response"},
    )  # fmt: skip
    events = parse_events(await response.read())
    expected = _cassette_answer("openai_responses_model_simple_response", 0)["parsed_body"]
    assert [name for name, _ in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1] == ("response.completed", {"type": "response.completed", "response": expected,
                                                 "sequence_number": len(events) - 1})  # fmt: skip


async def test_refusals_come_in_openais_envelope(sdk: openai.AsyncOpenAI, http: TestClient) -> None:
    with pytest.raises(openai.NotFoundError, match="Conversation with id 'conv_nope' not found"):
        await sdk.responses.create(model="gpt-4o", conversation="conv_nope", input="hi")
    with pytest.raises(openai.BadRequestError, match="Mutually exclusive parameters") as both:
        await sdk.responses.create(model="gpt-4o", conversation="conv_x", previous_response_id="resp_y", input="hi")
    assert both.value.code == "mutually_exclusive_parameters"
    with pytest.raises(openai.NotFoundError, match="Previous response with id 'resp_y' not found"):
        await sdk.responses.create(model="gpt-4o", previous_response_id="resp_y", input="hi")
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.responses.create(model="gpt-4o", input="What is the capital of France?", temperature=-1, stream=True)
    assert {"error": bad.value.body} == _cassette_answer("openai_responses_model_http_error", 0)["parsed_body"]
    with pytest.raises(openai.BadRequestError, match="tools\\[0\\].name"):
        await sdk.responses.create(model="gpt-4o", input="hi", tools=[{"type": "function"}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="Supported values are"):
        await sdk.responses.create(model="gpt-4o", input=[{"role": "robot", "content": "hi"}])  # type: ignore[list-item]
    with pytest.raises(openai.NotFoundError, match="Response with id 'resp_nope' not found"):
        await sdk.responses.retrieve("resp_nope")

    missing = await http.post("/v1/responses", json={"input": "hi"}, headers=AUTH)
    assert missing.status == 400 and (await missing.json())["error"] == {
        "message": "Missing required parameter: 'model'.", "type": "invalid_request_error", "param": "model",
        "code": "missing_required_parameter",
    }  # fmt: skip
    unknown = await http.post("/v1/responses", json={"model": "m"}, headers={**AUTH, "X-Simulator-Replay": "nope"})
    assert unknown.status == 400 and "Known recordings" in (await unknown.json())["error"]["message"]
    assert (await http.post("/v1/responses", json={"model": "m"})).status == 401  # credentials, as everywhere


async def test_stream_faults_and_outcomes(sdk: openai.AsyncOpenAI) -> None:
    def fault(value: str) -> dict[str, str]:
        return {"X-Simulator-Fault": value}

    with pytest.raises(openai.InternalServerError):
        await sdk.responses.create(model="gpt-4o", input="hi", extra_headers=fault("http-500"))
    stream = await sdk.responses.create(model="gpt-4o", input="hi", stream=True, extra_headers=fault("error-event:2"))
    events = [event async for event in stream]
    assert [e.type for e in events] == ["response.created", "response.in_progress", "error"]
    assert events[-1].code == "server_error"  # type: ignore[union-attr]
    with pytest.raises(openai.APIError):
        stream = await sdk.responses.create(model="gpt-4o", input="hi", stream=True, extra_headers=fault("drop:2"))
        [event async for event in stream]

    failed = await sdk.responses.create(model="gpt-4o", input="hi", stream=True, extra_headers=fault("run-failed"))
    last = [event async for event in failed][-1]
    assert last.type == "response.failed" and last.response.error.code == "server_error"  # type: ignore[union-attr]
    incomplete = await sdk.responses.create(model="gpt-4o", input="hi", extra_headers=fault("run-incomplete"))
    assert incomplete.status == "incomplete" and incomplete.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


async def test_a_background_stream_starts_queued(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="gpt-4.1", input="hi", stream=True, background=True)
    events = [event async for event in stream]
    assert [e.type for e in events][:3] == ["response.created", "response.queued", "response.in_progress"]
    assert events[0].response.status == "queued" and events[-1].response.background  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_events_are_paced_by_the_delay_header(sdk: openai.AsyncOpenAI) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    stream = await sdk.responses.create(
        model="gpt-4.1", input="hi", stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    )
    events = [event async for event in stream]
    assert loop.time() - started >= 0.02 * (len(events) - 1) * 0.9


def _cassette_interactions(stem: str) -> list[Any]:
    # Read the packaged file itself, not the simulator's parse of it: the replay must match the recording.
    from importlib import resources

    import yaml

    text = resources.files("gateway.simulator").joinpath("recordings", "responses", f"{stem}.yaml").read_text()
    interactions = yaml.safe_load(text)["interactions"]
    return [
        i for i in interactions if i["request"]["method"] == "POST" and i["request"]["uri"].endswith("/v1/responses")
    ]


def _cassette_body(stem: str, index: int) -> str:
    return str(_cassette_interactions(stem)[index]["response"]["body"]["string"])


def _cassette_answer(stem: str, index: int) -> dict[str, Any]:
    return dict(_cassette_interactions(stem)[index]["response"])


async def test_a_background_stream_is_picked_up_again_after_the_last_event_seen(http: TestClient) -> None:
    body = {"model": "gpt-4.1", "input": "hi", "stream": True, "background": True}
    first = parse_events(await (await http.post("/v1/responses", json=body, headers=AUTH)).read())
    response_id = first[0][1]["response"]["id"]
    again = await http.get(
        f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": "3"}, headers=AUTH
    )
    assert parse_events(await again.read()) == first[4:]
