"""The official openai SDK, sync and async, drives Assistants runs through the gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from openai import AssistantEventHandler, AsyncAssistantEventHandler

from tests.conftest import Gateway

USER_MESSAGE = {"messages": [{"role": "user", "content": "How are you today?"}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_current_weather", "description": "Gets the weather", "parameters": {"type": "object", "properties": {}}},
}  # fmt: skip


def usage_of(run: Any) -> tuple[int, int, int]:
    return run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens


def recorded_usage(gateway: Gateway, run_id: str) -> tuple[int, int, int]:
    usages = [r.usage for r in gateway.runs.finished if r.run_id == run_id and r.usage is not None]
    assert usages, f"the gateway recorded no usage for {run_id}"
    u = usages[-1]
    return u.prompt_tokens, u.completion_tokens, u.total_tokens


class TextCollector(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.tool_calls: list[Any] = []

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.tool_calls.append(tool_call)


class AsyncTextCollector(AsyncAssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.text = ""

    async def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""


async def test_async_create_and_run_then_poll(gateway):
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    run = await client.beta.threads.create_and_run(assistant_id=assistant.id, thread=USER_MESSAGE)
    assert run.status == "queued"
    run = await client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=5)
    assert run.status == "completed"
    messages = await client.beta.threads.messages.list(run.thread_id)
    assert messages.data[0].role == "assistant" and messages.data[0].content[0].text.value


async def test_async_create_and_run_poll(gateway):
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    run = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread=USER_MESSAGE, poll_interval_ms=5
    )
    assert run.status == "completed" and run.usage is not None


async def test_async_create_and_run_stream_with_handler(gateway):
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    handler = AsyncTextCollector()
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread=USER_MESSAGE, event_handler=handler
    ) as stream:
        await stream.until_done()
    run = handler.current_run
    assert run is not None and run.status == "completed"
    assert handler.text
    record = (await gateway.runs.wait())[-1]
    assert (record.thread_id, record.run_id, record.status) == (run.thread_id, run.id, "completed")
    assert record.streamed and record.ttfb_s is not None and record.first_delta_s is not None
    assert record.ttfb_s <= record.first_delta_s <= record.duration_s
    assert recorded_usage(gateway, run.id) == usage_of(run)


async def test_async_tool_call_round_trip_streams(gateway):
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o", tools=[WEATHER_TOOL])
    async with client.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=USER_MESSAGE) as stream:
        await stream.until_done()
        run = stream.current_run
    assert run is not None and run.status == "requires_action"
    calls = run.required_action.submit_tool_outputs.tool_calls
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id,
        thread_id=run.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "warm and sunny"} for call in calls],
        event_handler=AsyncTextCollector(),
    ) as stream:
        await stream.until_done()
        final = stream.current_run
    assert final is not None and final.status == "completed"
    assert recorded_usage(gateway, run.id) == usage_of(final)
    routes = [r.route for r in gateway.runs.finished if r.run_id == run.id]
    assert routes == ["create_thread_and_run", "submit_tool_outputs"]


def sync_flows(gateway: Gateway) -> dict[str, Any]:
    client = gateway.sync_client()
    assistant = client.beta.assistants.create(model="gpt-4o")
    plain = client.beta.threads.create_and_run(assistant_id=assistant.id, thread=USER_MESSAGE)
    polled = client.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=USER_MESSAGE, poll_interval_ms=5)
    handler = TextCollector()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread=USER_MESSAGE, event_handler=handler
    ) as stream:
        stream.until_done()
    tools = client.beta.assistants.create(model="gpt-4o", tools=[WEATHER_TOOL])
    paused = client.beta.threads.create_and_run_poll(assistant_id=tools.id, thread=USER_MESSAGE, poll_interval_ms=5)
    calls = paused.required_action.submit_tool_outputs.tool_calls
    with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id,
        thread_id=paused.thread_id,
        tool_outputs=[{"tool_call_id": c.id, "output": "sunny"} for c in calls],
        event_handler=TextCollector(),
    ) as stream:
        stream.until_done()
        resumed = stream.current_run
    return {"plain": plain, "polled": polled, "streamed": handler, "paused": paused, "resumed": resumed}


async def test_sync_sdk_flows(gateway):
    got = await asyncio.to_thread(sync_flows, gateway)
    assert got["plain"].status == "queued"
    assert got["polled"].status == "completed"
    assert got["streamed"].text and got["streamed"].current_run.status == "completed"
    assert got["paused"].status == "requires_action"
    assert got["resumed"].status == "completed"
    assert recorded_usage(gateway, got["paused"].id) == usage_of(got["resumed"])


async def test_run_failures_reach_the_sdk(gateway):
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    failed = await client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, poll_interval_ms=5, extra_headers={"X-Simulator-Fault": "run-failed"}
    )
    assert failed.status == "failed" and failed.last_error is not None
    handler = AsyncTextCollector()
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, event_handler=handler, extra_headers={"X-Simulator-Fault": "run-incomplete"}
    ) as stream:
        await stream.until_done()
    assert handler.current_run is not None and handler.current_run.status == "incomplete"
    record = (await gateway.runs.wait())[-1]
    assert record.status == "incomplete" and record.usage is not None


async def test_validation_errors_surface_as_sdk_exceptions(gateway):
    client = gateway.async_client()
    try:
        await client.beta.threads.create_and_run(assistant_id="asst_1", temperature=5)
    except openai.BadRequestError as exc:
        assert exc.status_code == 400
        assert exc.body["param"] == "temperature"
        assert exc.body["type"] == "invalid_request_error"
    else:
        raise AssertionError("temperature 5 was accepted")
