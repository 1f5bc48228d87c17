"""The official SDK, unchanged, against the simulator: polled, streamed and tool-call flows."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler
from openai.types.beta import AssistantStreamEvent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK deprecates Assistants

USER_TURN = {"messages": [{"role": "user", "content": "Hello there, assistant! How are you today?"}]}
RECORDED_REPLY = "Hello! I'm just a program, so I don't have feelings"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {}},
    },
}


async def test_create_and_run_is_queued_then_advances_with_each_poll(sdk: openai.AsyncOpenAI, simulator_settings: Any) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    raw = await sdk.beta.threads.with_raw_response.create_and_run(assistant_id=assistant.id, thread=USER_TURN)
    run = raw.parse()
    assert run.status == "queued" and run.usage is None
    assert raw.headers["openai-poll-after-ms"] == str(simulator_settings.poll_after_ms)
    seen = [(await sdk.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)).status for _ in range(3)]
    assert seen == ["in_progress", "completed", "completed"]


async def test_create_and_run_poll_completes_with_usage_and_reply(sdk: openai.AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4.1-mini", instructions="Be brief.", metadata={"k": "v"})
    run = await sdk.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=USER_TURN, poll_interval_ms=1)
    assert run.status == "completed" and run.completed_at is not None
    assert (run.model, run.instructions, run.metadata, run.assistant_id) == (
        "gpt-4.1-mini",
        "Be brief.",
        {},
        assistant.id,
    )
    assert run.usage is not None and run.usage.total_tokens == 73
    assert run.usage.model_dump()["prompt_token_details"] == {"cached_tokens": 0}
    assert run.usage.model_dump()["completion_tokens_details"] == {"reasoning_tokens": 0}
    messages = (await sdk.beta.threads.messages.list(run.thread_id)).data
    assert [message.role for message in messages] == ["assistant", "user"]
    reply = messages[0]
    assert reply.run_id == run.id and reply.assistant_id == assistant.id and reply.thread_id == run.thread_id
    assert reply.content[0].text.value.startswith(RECORDED_REPLY)
    steps = (await sdk.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)).data
    assert [step.type for step in steps] == ["message_creation"]
    assert steps[0].step_details.message_creation.message_id == reply.id


class Collector(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[AssistantStreamEvent] = []
        self.text = ""

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.events.append(event)

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""


def stream_with_sync_sdk(base_url: str) -> tuple[Collector, Any, Any]:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    assistant = client.beta.assistants.create(model="gpt-4o")
    handler = Collector()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread=USER_TURN, event_handler=handler
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
    return handler, final, assistant


async def test_create_and_run_stream_delivers_text_and_a_completed_run(base_url: str, simulator_state: Any) -> None:
    handler, final, assistant = await asyncio.to_thread(stream_with_sync_sdk, base_url)
    kinds = [event.event for event in handler.events]
    assert kinds[:3] == ["thread.created", "thread.run.created", "thread.run.queued"]
    assert kinds[-1] == "thread.run.completed"
    assert handler.text.startswith(RECORDED_REPLY)
    thread_id = handler.events[0].data.id
    assert final.status == "completed" and final.thread_id == thread_id and final.assistant_id == assistant.id
    assert final.usage is not None and final.usage.total_tokens == 73
    assert simulator_state.threads[thread_id].runs[final.id].status == "completed"
    assert simulator_state.open_streams == 0 and simulator_state.aborted_streams == 0


async def test_function_tool_flow_streams_through_requires_action(sdk: openai.AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=[WEATHER_TOOL])
    async with sdk.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=USER_TURN) as stream:
        await stream.until_done()
        paused = stream.current_run
    assert paused is not None and paused.status == "requires_action"
    calls = paused.required_action.submit_tool_outputs.tool_calls
    assert [call.function.name for call in calls] == ["get_weather"]
    async with sdk.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "rainy"}]
    ) as stream:
        await stream.until_done()
        resumed = await stream.get_final_run()
        text = "".join(message.content[0].text.value for message in await stream.get_final_messages())
    assert resumed.id == paused.id and resumed.status == "completed"
    assert resumed.usage is not None and resumed.usage.total_tokens == 598
    assert text.startswith("Since it's warm and sunny")
    messages = (await sdk.beta.threads.messages.list(paused.thread_id)).data
    assert messages[0].role == "assistant" and messages[0].content[0].text.value == text
    steps = (await sdk.beta.threads.runs.steps.list(paused.id, thread_id=paused.thread_id, order="asc")).data
    call = steps[0].step_details.tool_calls[0]
    assert (call.id, call.function.name, call.function.output) == (calls[0].id, "get_weather", "rainy")


async def test_function_tool_flow_polled(sdk: openai.AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=[WEATHER_TOOL])
    paused = await sdk.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=USER_TURN, poll_interval_ms=1)
    assert paused.status == "requires_action"
    call_id = paused.required_action.submit_tool_outputs.tool_calls[0].id
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs for call_ids"):
        await sdk.beta.threads.runs.submit_tool_outputs(
            paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": "call_wrong", "output": "x"}]
        )
    done = await sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=paused.id,
        thread_id=paused.thread_id,
        tool_outputs=[{"tool_call_id": call_id, "output": "x"}],
        poll_interval_ms=1,
    )
    assert done.status == "completed" and done.usage is not None
    with pytest.raises(openai.BadRequestError, match='Runs in status "completed" do not accept tool outputs'):
        await sdk.beta.threads.runs.submit_tool_outputs(
            paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call_id, "output": "x"}]
        )


async def test_run_on_a_thread_with_additional_messages_and_include(sdk: openai.AsyncOpenAI) -> None:
    upload = await sdk.files.create(file=("foods.txt", b"Filip likes cake"), purpose="assistants")
    assistant = await sdk.beta.assistants.create(
        model="gpt-4o",
        instructions="Use the files.",
        tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [upload.id]}]}},
    )
    [store_id] = assistant.tool_resources.file_search.vector_store_ids
    assert (await sdk.vector_stores.retrieve(store_id)).file_counts.completed == 1
    thread = await sdk.beta.threads.create()
    async with sdk.beta.threads.runs.stream(
        thread_id=thread.id,
        assistant_id=assistant.id,
        additional_instructions="Answer in English.",
        additional_messages=[{"role": "user", "content": "What's Filip's favorite food?"}],
        include=["step_details.tool_calls[*].file_search.results[*].content"],
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
    assert run.instructions == "Use the files.\nAnswer in English." and run.status == "completed"
    assert run.tools[0].type == "file_search"
    # The SDK's own step snapshots only accumulate deltas; the stored steps hold the full results.
    steps = (await sdk.beta.threads.runs.steps.list(run.id, thread_id=thread.id)).data
    search = next(step for step in steps if step.type == "tool_calls").step_details.tool_calls[0]
    assert search.file_search.results[0].content  # asked for with include[]
    messages = (await sdk.beta.threads.messages.list(thread.id, order="asc")).data
    assert [message.role for message in messages] == ["user", "assistant"]
    assert "cake" in messages[1].content[0].text.value


async def test_code_interpreter_runs_replay_the_openllmetry_cassette(sdk: openai.AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    assert assistant.tool_resources.code_interpreter.file_ids == []
    thread = await sdk.beta.threads.create(messages=[{"role": "user", "content": "Solve 3x + 11 = 14"}])
    async with sdk.beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, model="gpt-4o-mini"
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()
        steps = await stream.get_final_run_steps()
    assert run.model == "gpt-4o-mini" and run.usage is not None and run.usage.total_tokens == 469
    code = next(step for step in steps if step.type == "tool_calls").step_details.tool_calls[0]
    assert code.type == "code_interpreter" and "sympy" in code.code_interpreter.input


async def test_files_round_trip(sdk: openai.AsyncOpenAI) -> None:
    content = bytes(range(256)) * 4
    created = await sdk.files.create(file=("data.bin", content), purpose="assistants")
    assert created.id.startswith("file-") and created.bytes == len(content) and created.filename == "data.bin"
    assert (await sdk.files.retrieve(created.id)).status == "processed"
    assert (await sdk.files.content(created.id)).content == content
    assert [file.id for file in (await sdk.files.list()).data] == [created.id]
    assert (await sdk.files.delete(created.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(created.id)


async def test_assistants_crud(sdk: openai.AsyncOpenAI) -> None:
    created = await sdk.beta.assistants.create(model="gpt-4o", name="a")
    updated = await sdk.beta.assistants.update(created.id, name="b", tools=[WEATHER_TOOL])
    assert updated.name == "b" and updated.tools[0].function.name == "get_weather"
    assert (await sdk.beta.assistants.retrieve(created.id)).name == "b"
    assert (await sdk.beta.assistants.delete(created.id)).deleted
    with pytest.raises(openai.NotFoundError, match=f"No assistant found with id '{created.id}'"):
        await sdk.beta.assistants.retrieve(created.id)


async def test_thread_update_and_delete(sdk: openai.AsyncOpenAI) -> None:
    thread = await sdk.beta.threads.create(metadata={"a": "1"})
    assert (await sdk.beta.threads.update(thread.id, metadata={"a": "2"})).metadata == {"a": "2"}
    assert (await sdk.beta.threads.delete(thread.id)).deleted
    with pytest.raises(openai.NotFoundError, match=f"No thread found with id '{thread.id}'"):
        await sdk.beta.threads.retrieve(thread.id)
