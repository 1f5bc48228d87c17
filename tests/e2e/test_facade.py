"""The Assistants API served on the Responses API (`upstream.protocol: responses`), end to end: the
official SDK through the gateway, the simulator's Responses + Conversations API behind it."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest
from openai.lib.streaming import AssistantEventHandler

from gateway.keys import STATE
from tests.support import REDIS_TIMEOUT_S

FACADE = {
    "upstream": {"protocol": "responses", "model_map": {"gpt-4o": "gpt-4.1"}},
    "assistants": {
        "asst_support": {"model": "gpt-4o", "name": "Support", "instructions": "Follow the user instructions exactly.",
                         "temperature": 0.2},
    },
}  # fmt: skip
THREAD = {"messages": [{"role": "user", "content": "Reply exactly: streamed"}], "metadata": {"ticket": "7"}}


def sent(simulator_state: Any, method: str, path: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in simulator_state.requests if (r.method, r.path) == (method, path)]


class Collect(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.events: list[str] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text.append(delta.value)


async def test_a_streamed_create_and_run_is_served_on_the_responses_api(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.sync_client()
    handler = Collect()

    def run() -> Any:
        with client.beta.threads.create_and_run_stream(
            assistant_id="asst_support", thread=THREAD, max_completion_tokens=300, event_handler=handler
        ) as stream:
            stream.until_done()
            return stream.get_final_run()

    final = await asyncio.to_thread(run)
    assert "".join(handler.text) == "streamed"
    assert handler.events[:3] == ["thread.created", "thread.run.created", "thread.run.queued"]
    assert handler.events[-1] == "thread.run.completed"
    assert (final.status, final.assistant_id, final.model) == ("completed", "asst_support", "gpt-4o")
    assert final.thread_id.startswith("conv_")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (21, 3, 24)

    [conversation] = sent(simulator_state, "POST", "/v1/conversations")
    assert conversation == {"metadata": {"ticket": "7"}, "items": []}  # the messages go as the response's input
    [response] = sent(simulator_state, "POST", "/v1/responses")
    assert response == {
        "model": "gpt-4.1", "conversation": final.thread_id, "input": [{"role": "user", "content": "Reply exactly: streamed"}],
        "instructions": "Follow the user instructions exactly.", "temperature": 0.2, "max_output_tokens": 300,
        "truncation": "auto", "background": True, "stream": True,
    }  # fmt: skip
    assert not any(r.path.startswith("/v1/threads") for r in simulator_state.requests)
    record = (await gateway.runs.wait())[-1]  # the pipeline saw an Assistants run: ids, status, usage
    assert (record.thread_id, record.run_id, record.status) == (final.thread_id, final.id, "completed")
    assert record.usage is not None and record.usage.total_tokens == 24


async def test_the_async_sdk_gets_the_same_run_and_assistants_are_the_platforms(make_gateway) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.async_client()
    async with client.beta.threads.create_and_run_stream(assistant_id="asst_support", thread=THREAD) as stream:
        text = "".join([delta async for delta in stream.text_deltas])
        final = await stream.get_final_run()
    assert text == "streamed" and final.status == "completed"
    assistant = await client.beta.assistants.retrieve("asst_support")
    assert (assistant.model, assistant.name) == ("gpt-4o", "Support")
    assert [a.id for a in (await client.beta.assistants.list()).data] == ["asst_support"]


async def test_what_is_not_served_yet_says_so(make_gateway) -> None:
    client = (await make_gateway(**FACADE)).async_client()
    with pytest.raises(openai.NotFoundError, match="No assistant found"):
        await client.beta.threads.create_and_run(assistant_id="asst_other", thread=THREAD, stream=True)
    with pytest.raises(openai.NotFoundError, match="not served yet"):
        await client.beta.threads.messages.update("msg_1", thread_id="conv_1", metadata={"k": "v"})


TOOLS = {
    "asst_tools": {
        "model": "gpt-4o",
        "tools": [{"type": "function", "function": {"name": "get_capital", "parameters": {
            "type": "object", "properties": {"country": {"type": "string"}}}}}],
    },
}  # fmt: skip


async def test_a_function_tool_round_trip_is_one_run_with_its_usage_summed(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(upstream=FACADE["upstream"], assistants=TOOLS)
    client = gateway.async_client()
    question = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    async with client.beta.threads.create_and_run_stream(assistant_id="asst_tools", thread=question) as stream:
        await stream.until_done()
        paused = await stream.get_final_run()
    assert paused.status == "requires_action" and paused.usage is None
    [call] = paused.required_action.submit_tool_outputs.tool_calls
    assert (call.function.name, call.function.arguments) == ("get_capital", '{"country":"France"}')
    assert (await client.beta.threads.runs.retrieve(paused.id, thread_id=paused.thread_id)).status == "requires_action"

    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "Paris"}]
    ) as stream:
        text = "".join([delta async for delta in stream.text_deltas])
        final = await stream.get_final_run()
    assert "Paris" in text
    assert (final.id, final.thread_id, final.status) == (paused.id, paused.thread_id, "completed")
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (533, 25, 558)
    retrieved = await client.beta.threads.runs.retrieve(paused.id, thread_id=paused.thread_id)
    assert retrieved.status == "completed" and retrieved.usage.total_tokens == 558

    first, second = sent(simulator_state, "POST", "/v1/responses")
    assert first["tools"] == [{"type": "function", "name": "get_capital",
                               "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}]  # fmt: skip
    assert second["conversation"] == paused.thread_id
    assert second["input"] == [{"type": "function_call_output", "call_id": call.id, "output": "Paris"}]
    records = await gateway.runs.wait(2)
    assert [r.status for r in records] == ["requires_action", "completed"]
    assert records[-1].usage is not None and records[-1].usage.total_tokens == 558  # settled once, the sum

    with pytest.raises(openai.BadRequestError, match="do not accept tool outputs"):
        await client.beta.threads.runs.submit_tool_outputs(
            run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "x"}],
            stream=True,
        )  # fmt: skip


async def test_a_thread_lives_as_a_conversation_through_the_sdks_usual_calls(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.async_client()
    store = await client.vector_stores.create(name="faq")  # files and vector stores pass through as they are
    thread = await client.beta.threads.create(
        messages=[{"role": "user", "content": "Hello"}], metadata={"ticket": "9"},
        tool_resources={"file_search": {"vector_store_ids": [store.id]}},
    )  # fmt: skip
    assert thread.id.startswith("conv_") and thread.metadata == {"ticket": "9"}
    assert thread.tool_resources.file_search.vector_store_ids == [store.id]
    note = await client.beta.threads.messages.create(thread.id, role="user", content="Reply exactly: streamed")
    assert (note.thread_id, note.role, note.content[0].text.value) == (thread.id, "user", "Reply exactly: streamed")

    search = [{"type": "file_search"}]
    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id="asst_support", tools=search) as stream:
        text = "".join([delta async for delta in stream.text_deltas])
        run = await stream.get_final_run()
    assert text == "The capital of France is Paris."  # the simulator's recorded file_search answer
    assert run.thread_id == thread.id and run.status == "completed"

    messages = await client.beta.threads.messages.list(thread.id, order="asc")
    assert [(m.role, m.content[0].text.value, m.run_id) for m in messages.data] == [
        ("user", "Hello", None), ("user", "Reply exactly: streamed", None), ("assistant", text, run.id)]
    answer = await client.beta.threads.messages.retrieve(messages.data[-1].id, thread_id=thread.id)
    assert (answer.role, answer.content[0].text.value, answer.run_id) == ("assistant", text, run.id)
    first = await client.beta.threads.messages.list(thread.id, order="asc", limit=1)
    assert first.has_more and [m.content[0].text.value for m in first.data] == ["Hello"]
    rest = await client.beta.threads.messages.list(thread.id, order="asc", after=first.data[0].id)
    assert [m.content[0].text.value for m in rest.data] == ["Reply exactly: streamed", text]

    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id="asst_support") as stream:
        await stream.until_done()
        second = await stream.get_final_run()
    tagged = await client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"reviewed": "yes"})
    assert tagged.metadata == {"reviewed": "yes"} and tagged.status == "completed"
    assert (await client.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).metadata == {"reviewed": "yes"}
    listed = await client.beta.threads.runs.list(thread.id)  # newest first
    assert [r.id for r in listed.data] == [second.id, run.id] and not listed.has_more
    page = await client.beta.threads.runs.list(thread.id, order="asc", limit=1)
    assert [r.id for r in page.data] == [run.id] and page.has_more

    updated = await client.beta.threads.update(thread.id, metadata={"ticket": "10"})
    assert updated.metadata == {"ticket": "10"} and (await client.beta.threads.retrieve(thread.id)).metadata == {"ticket": "10"}
    assert (await client.beta.threads.delete(thread.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.beta.threads.retrieve(thread.id)
    response = sent(simulator_state, "POST", "/v1/responses")[0]
    assert response["conversation"] == thread.id and response["input"] == []  # the messages are in the conversation
    assert response["tools"] == [{"type": "file_search", "vector_store_ids": [store.id]}]  # the thread's store joined


async def test_create_and_run_poll_follows_a_background_response(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.sync_client()
    run = await asyncio.to_thread(
        client.beta.threads.create_and_run_poll, assistant_id="asst_support", thread=THREAD, poll_interval_ms=1
    )
    assert (run.status, run.assistant_id) == ("completed", "asst_support")
    assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == (21, 3, 24)
    assert run.started_at is not None and run.completed_at is not None
    [created] = sent(simulator_state, "POST", "/v1/responses")
    assert (created["background"], created["stream"], created["conversation"]) == (True, False, run.thread_id)
    polls = [r for r in simulator_state.requests if r.method == "GET" and r.path.startswith("/v1/responses/")]
    assert len(polls) == 2  # queued → in_progress → completed, one step per retrieve
    messages = await gateway.async_client().beta.threads.messages.list(run.thread_id, order="asc")
    assert [(m.role, m.run_id) for m in messages.data] == [("user", None), ("assistant", run.id)]
    [record] = await gateway.runs.wait()  # the run call (the polls are pass-through calls)
    assert (record.status, record.streamed, record.run_id) == ("queued", False, run.id)
    ledger = await gateway.app[STATE].usage(None, "2000-01-01")  # settled from the poll that saw it end
    assert [(row.runs, row.total_tokens) for row in ledger] == [(1, 24)]


async def test_run_steps_come_from_the_output_items_and_a_background_run_can_be_cancelled(make_gateway) -> None:
    gateway = await make_gateway(upstream=FACADE["upstream"], assistants={**FACADE["assistants"], **TOOLS})
    client = gateway.async_client()
    question = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    async with client.beta.threads.create_and_run_stream(assistant_id="asst_tools", thread=question) as stream:
        await stream.until_done()
        paused = await stream.get_final_run()
    [call] = paused.required_action.submit_tool_outputs.tool_calls
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "Paris"}]
    ) as stream:
        events = [event.event async for event in stream]
    assert events[:2] == ["thread.run.queued", "thread.run.step.completed"]  # the tool step, answered
    steps = await client.beta.threads.runs.steps.list(paused.id, thread_id=paused.thread_id, order="asc")
    assert [(s.type, s.status) for s in steps.data] == [("tool_calls", "completed"), ("message_creation", "completed")]
    tool_step = steps.data[0].step_details
    assert tool_step.tool_calls[0].function.arguments == '{"country":"France"}'
    assert tool_step.tool_calls[0].function.output == "Paris" and steps.data[0].completed_at is not None
    one = await client.beta.threads.runs.steps.retrieve(steps.data[1].id, thread_id=paused.thread_id, run_id=paused.id)
    assert one.step_details.message_creation.message_id and one.status == "completed"

    queued = await client.beta.threads.create_and_run(assistant_id="asst_support", thread=THREAD)
    cancelled = await client.beta.threads.runs.cancel(queued.id, thread_id=queued.thread_id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
        await client.beta.threads.runs.cancel(queued.id, thread_id=queued.thread_id)


async def test_a_streamed_run_is_cancelled_mid_stream(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.async_client()
    slow = {"X-Simulator-Event-Delay-Ms": "40"}
    seen: list[str] = []
    stream = await client.beta.threads.create_and_run(assistant_id="asst_support", thread=THREAD, stream=True,
                                                      extra_headers=slow)  # fmt: skip
    async for event in stream:
        seen.append(event.event)
        if event.event == "thread.run.in_progress":  # the upstream response exists: it can be cancelled
            cancelled = await client.beta.threads.runs.cancel(event.data.id, thread_id=event.data.thread_id)
            assert cancelled.status == "cancelled"
    assert seen[-1] == "thread.run.cancelled" and "thread.run.completed" not in seen
    [response] = [r.path for r in simulator_state.requests if r.path.endswith("/cancel")]
    run = await client.beta.threads.runs.retrieve(cancelled.id, thread_id=cancelled.thread_id)
    assert run.status == "cancelled" and run.cancelled_at is not None
    [record] = await gateway.runs.wait()
    assert (record.run_id, record.status) == (run.id, "cancelled")


async def test_tool_outputs_without_a_stream_continue_the_run_in_the_background(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(upstream=FACADE["upstream"], assistants=TOOLS)
    client = gateway.async_client()
    question = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    paused = await client.beta.threads.create_and_run_poll(assistant_id="asst_tools", thread=question, poll_interval_ms=1)
    assert paused.status == "requires_action"
    [call] = paused.required_action.submit_tool_outputs.tool_calls
    final = await client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "Paris"}],
        poll_interval_ms=1,
    )  # fmt: skip
    assert (final.id, final.status, final.usage.total_tokens) == (paused.id, "completed", 558)  # both responses
    _, second = sent(simulator_state, "POST", "/v1/responses")
    assert (second["background"], second["stream"]) == (True, False)
    assert second["input"] == [{"type": "function_call_output", "call_id": call.id, "output": "Paris"}]
    ledger = await gateway.app[STATE].usage(None, "2000-01-01")
    assert [(row.runs, row.total_tokens) for row in ledger] == [(1, 558)]


async def test_max_prompt_tokens_is_counted_upstream_and_ends_the_run_incomplete(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**FACADE)
    client = gateway.async_client()
    long = {"messages": [{"role": "user", "content": "Please read this. " * 120}]}  # ~540 tokens as counted
    async with client.beta.threads.create_and_run_stream(
        assistant_id="asst_support", thread=long, max_prompt_tokens=256
    ) as stream:
        events = [event.event async for event in stream]
        run = await stream.get_final_run()
    assert events[-1] == "thread.run.incomplete"
    assert (run.status, run.incomplete_details.reason, run.usage.total_tokens) == ("incomplete", "max_prompt_tokens", 0)
    [counted] = sent(simulator_state, "POST", "/v1/responses/input_tokens")
    assert counted["conversation"] == run.thread_id and counted["model"] == "gpt-4.1"
    assert not sent(simulator_state, "POST", "/v1/responses")  # never asked for
    messages = await client.beta.threads.messages.list(run.thread_id)
    assert [m.role for m in messages.data] == ["user"]  # what it was given is on the thread

    short = await client.beta.threads.create_and_run_poll(assistant_id="asst_support", thread=THREAD,
                                                          max_prompt_tokens=256, poll_interval_ms=1)  # fmt: skip
    assert short.status == "completed" and short.usage.total_tokens == 24
    records = await gateway.runs.wait(2)
    assert [r.status for r in records][:1] == ["incomplete"]


async def test_the_audit_keeps_the_model_asked_and_the_model_sent(make_gateway, tmp_path) -> None:
    gateway = await make_gateway(**FACADE, audit={"sink": "file", "path": str(tmp_path / "audit.jsonl")})
    client = gateway.async_client()
    async with client.beta.threads.create_and_run_stream(assistant_id="asst_support", thread=THREAD, model="gpt-4o") as stream:
        run = await stream.get_final_run()
    await gateway.server.close()  # the audit writes in the background; stop() writes everything accepted
    decision, outcome = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    assert decision["requested_model"] == "gpt-4o" and run.model == "gpt-4o"
    assert (outcome["model"], outcome["upstream_model"]) == ("gpt-4o", "gpt-4.1")  # upstream.model_map


async def test_attachments_join_the_threads_vector_store_and_code_interpreter_files(make_gateway, simulator_state) -> None:
    tools = [{"type": "file_search"}, {"type": "code_interpreter"}]
    gateway = await make_gateway(upstream=FACADE["upstream"], assistants={"asst_files": {"model": "gpt-4o", "tools": tools}})
    client = gateway.async_client()
    faq, data, more = [(await client.files.create(file=(name, b"Paris is the capital.", "text/plain"), purpose="assistants")).id
                       for name in ("faq.txt", "data.csv", "more.txt")]  # fmt: skip
    message = {"role": "user", "content": "What is the capital of France?", "attachments": [
        {"file_id": faq, "tools": [{"type": "file_search"}]}, {"file_id": data, "tools": [{"type": "code_interpreter"}]}]}  # fmt: skip
    async with client.beta.threads.create_and_run_stream(assistant_id="asst_files", thread={"messages": [message]}) as stream:
        run = await stream.get_final_run()
    assert run.status == "completed"
    [store] = sent(simulator_state, "POST", "/v1/vector_stores")
    assert store["file_ids"] == [faq]  # the thread's own store, made for its first file_search attachment
    thread = await client.beta.threads.retrieve(run.thread_id)
    [store_id] = thread.tool_resources.file_search.vector_store_ids
    assert thread.tool_resources.code_interpreter.file_ids == [data]
    [response] = sent(simulator_state, "POST", "/v1/responses")
    assert response["tools"] == [{"type": "file_search", "vector_store_ids": [store_id]},
                                 {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [data]}}]  # fmt: skip

    await client.beta.threads.messages.create(run.thread_id, role="user", content="And this?",
                                              attachments=[{"file_id": more, "tools": [{"type": "file_search"}]}])  # fmt: skip
    assert sent(simulator_state, "POST", f"/v1/vector_stores/{store_id}/files") == [{"file_id": more}]  # the same store
    assert (await client.vector_stores.retrieve(store_id)).file_counts.total == 2


async def test_assistants_created_at_once_are_all_listed(make_gateway, redis_server) -> None:
    state = {"backend": "redis", "url": redis_server.url, "timeout_s": REDIS_TIMEOUT_S}  # where writers interleave
    client = (await make_gateway(**FACADE, state=state)).async_client()
    made = await asyncio.gather(*(client.beta.assistants.create(model="gpt-4o", name=f"a{n}") for n in range(12)))
    listed = await client.beta.assistants.list(limit=100)
    assert {a.id for a in made} <= {a.id for a in listed.data}


LAST_TWO = {"type": "last_messages", "last_messages": 2}


async def test_truncation_to_the_last_messages_gives_the_run_only_those(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(upstream=FACADE["upstream"], assistants={**FACADE["assistants"], **TOOLS})
    client = gateway.async_client()
    thread = await client.beta.threads.create(messages=[{"role": "user", "content": c} for c in ("one", "two", "three")])
    latest = {"role": "user", "content": "Reply exactly: streamed"}
    async with client.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id="asst_support", truncation_strategy=LAST_TWO, additional_messages=[latest]
    ) as stream:
        text = "".join([delta async for delta in stream.text_deltas])
        run = await stream.get_final_run()
    assert run.status == "completed" and run.truncation_strategy.type == "last_messages"
    [response] = sent(simulator_state, "POST", "/v1/responses")
    assert "conversation" not in response and "truncation" not in response  # the last two messages only
    assert response["input"] == [{"role": "user", "content": [{"type": "input_text", "text": text}]}
                                 for text in ("three", "Reply exactly: streamed")]  # fmt: skip
    messages = await client.beta.threads.messages.list(thread.id, order="asc")
    assert [(m.role, m.content[0].text.value, m.run_id) for m in messages.data][-2:] == [
        ("user", "Reply exactly: streamed", None), ("assistant", text, run.id)]  # the answer joined the thread

    polled = await client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id="asst_support", truncation_strategy=LAST_TWO, poll_interval_ms=1
    )
    assert polled.status == "completed"
    second = sent(simulator_state, "POST", "/v1/responses")[1]["input"]
    assert [(i["role"], i["content"][0]["text"]) for i in second] == [("user", "Reply exactly: streamed"), ("assistant", text)]

    async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id="asst_tools", truncation_strategy=LAST_TWO) as stream:
        paused = await stream.get_final_run()
    [call] = paused.required_action.submit_tool_outputs.tool_calls
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call.id, "output": "Paris"}]
    ) as stream:
        final = await stream.get_final_run()
    answered = sent(simulator_state, "POST", "/v1/responses")[3]
    asking = list(simulator_state.responses_store.responses)[2]  # the response that made the call
    assert final.status == "completed" and "conversation" not in answered
    assert (answered["previous_response_id"], answered["input"][0]["call_id"]) == (asking, call.id)


async def test_a_run_paused_on_one_replica_is_finished_on_another_through_redis(make_gateway, redis_server) -> None:
    state = {"backend": "redis", "url": redis_server.url, "timeout_s": REDIS_TIMEOUT_S}
    a, b = [await make_gateway(upstream=FACADE["upstream"], state=state) for _ in range(2)]  # or one, restarted
    first, second = a.async_client(), b.async_client()
    tools = [{"type": "function", "function": {"name": "get_capital"}}]
    assistant = await first.beta.assistants.create(model="gpt-4o", tools=tools)
    question = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
    async with first.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=question) as stream:
        paused = await stream.get_final_run()
    [call] = paused.required_action.submit_tool_outputs.tool_calls
    assert [x.id for x in (await second.beta.assistants.list()).data] == [assistant.id]
    assert (await second.beta.threads.runs.retrieve(paused.id, thread_id=paused.thread_id)).status == "requires_action"
    async with second.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "Paris"}]
    ) as stream:
        final = await stream.get_final_run()
    assert (final.id, final.status, final.usage.total_tokens) == (paused.id, "completed", 558)
    assert [r.id for r in (await first.beta.threads.runs.list(paused.thread_id)).data] == [paused.id]


TWO_TEAMS = {
    "env": {"UP": "sk-upstream", "A": "sk-team-a", "B": "sk-team-b"},
    "upstream": {**FACADE["upstream"], "api_key": "${UP}"},
    "tenants": {"team-a": {"keys": ["${A}"], "policy": "strict"}, "team-b": {"keys": ["${B}"]}},
    "policies": {"strict": {"models": {"allow": ["gpt-4o"]}}},
    "assistants": {"asst_support": {**FACADE["assistants"]["asst_support"], "tenants": ["team-a"]}},
}


async def test_assistants_made_through_the_api_belong_to_their_tenant(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**TWO_TEAMS)
    a, b = gateway.async_client(api_key="sk-team-a"), gateway.async_client(api_key="sk-team-b")
    mine = await a.beta.assistants.create(model="gpt-4o", name="Mine", instructions="Be brief.", metadata={"k": "v"})
    assert mine.id.startswith("asst_") and (mine.model, mine.name, mine.metadata) == ("gpt-4o", "Mine", {"k": "v"})
    assert [x.id for x in (await a.beta.assistants.list(order="asc")).data] == ["asst_support", mine.id]
    assert (await b.beta.assistants.list()).data == []  # neither the platform's (team-a only) nor team-a's
    for call in (b.beta.assistants.retrieve(mine.id), b.beta.assistants.update(mine.id, name="hijacked"),
                 b.beta.assistants.delete(mine.id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            await call
    with pytest.raises(openai.NotFoundError):  # nor run it
        await b.beta.threads.create_and_run(assistant_id=mine.id, thread=THREAD, stream=True)

    updated = await a.beta.assistants.update(mine.id, instructions="Follow the user instructions exactly.")
    assert (updated.instructions, updated.name) == ("Follow the user instructions exactly.", "Mine")
    async with a.beta.threads.create_and_run_stream(assistant_id=mine.id, thread=THREAD) as stream:
        assert "".join([d async for d in stream.text_deltas]) == "streamed"
    [response] = sent(simulator_state, "POST", "/v1/responses")
    assert response["instructions"] == "Follow the user instructions exactly." and response["model"] == "gpt-4.1"

    with pytest.raises(openai.BadRequestError, match="reasoning_effort|Unrecognized"):
        await a.beta.assistants.create(model="gpt-4o", reasoning_effort="low")
    with pytest.raises(openai.BadRequestError, match="platform"):
        await a.beta.assistants.update("asst_support", name="mine now")
    assert (await a.beta.assistants.delete(mine.id)).deleted
    assert [x.id for x in (await a.beta.assistants.list()).data] == ["asst_support"]


async def test_the_policy_judges_the_assistants_own_model(make_gateway) -> None:
    gateway = await make_gateway(**TWO_TEAMS)
    a = gateway.async_client(api_key="sk-team-a")
    with pytest.raises(openai.PermissionDeniedError, match="models"):  # an assistant's body is judged as its runs
        await a.beta.assistants.create(model="o3")
    o3 = {**TWO_TEAMS, "assistants": {"asst_o3": {"model": "o3"}}}  # the platform's, never judged as a body
    a = (await make_gateway(**o3)).async_client(api_key="sk-team-a")
    with pytest.raises(openai.PermissionDeniedError, match="models"):  # the body names no model: the assistant's is judged
        await a.beta.threads.create_and_run(assistant_id="asst_o3", thread=THREAD, stream=True)
