"""`X-Simulator-Fault` modes, seen through raw HTTP and through the SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
from aiohttp.test_utils import TestClient, TestServer

from .conftest import HEADERS, create_assistant, parse_events, read_chunks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_body(assistant_id: str, stream: bool = True) -> dict[str, Any]:
    return {"assistant_id": assistant_id, "thread": {"messages": [{"role": "user", "content": "hi"}]}, "stream": stream}


def fault(value: str, **extra: str) -> dict[str, str]:
    return {**HEADERS, "X-Simulator-Fault": value, **extra}


async def wait_for(condition: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("status", "type_"), [(500, "server_error"), (503, "server_error"), (418, "invalid_request_error")]
)
async def test_http_fault_answers_with_the_error_envelope(http: TestClient, status: int, type_: str) -> None:
    response = await http.post("/v1/threads/runs", json=run_body("asst_x"), headers=fault(f"http-{status}"))
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == type_


async def test_rate_limit_fault_carries_retry_after_and_ratelimit_headers(
    http: TestClient, sdk: openai.AsyncOpenAI
) -> None:
    response = await http.get("/v1/assistants", headers=fault("http-429"))
    assert response.status == 429
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert {"x-ratelimit-limit-requests", "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens"} <= set(
        response.headers
    )
    assert (await response.json())["error"]["code"] == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.beta.assistants.list(
            extra_headers={"X-Simulator-Fault": "http-429", "X-Simulator-Retry-After": "0.5"}
        )
    assert caught.value.response.headers["retry-after"] == "0.5"


async def test_unknown_fault_is_refused(http: TestClient) -> None:
    for value in ("explode", "http-200", "run-failed:3", "drop:x"):
        response = await http.get("/v1/assistants", headers=fault(value))
        assert response.status == 400, value
        assert "X-Simulator-Fault" in (await response.json())["error"]["message"]


async def test_hang_never_answers_until_the_client_gives_up(base_url: str, simulator_state: Any) -> None:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await client.beta.assistants.list(extra_headers={"X-Simulator-Fault": "hang"})
    await client.close()
    assert simulator_state.requests[-1].headers["X-Simulator-Fault"] == "hang"


async def test_hang_lets_go_on_shutdown(simulator: TestServer, simulator_state: Any) -> None:
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(session.get(simulator.make_url("/v1/assistants"), headers=fault("hang")))
        await wait_for(lambda: simulator_state.requests)
        async with asyncio.timeout(2):  # not the 60 s aiohttp grants handlers that never return
            await simulator.close()
        with pytest.raises(aiohttp.ClientError):
            await pending


async def test_drop_cuts_the_connection_after_n_events(http: TestClient, simulator_state: Any) -> None:
    assistant = await create_assistant(http)
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=fault("drop:4"))
    assert response.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for data in response.content.iter_any():
            received += data
    assert [name for name, _ in parse_events(received)] == [
        "thread.created",
        "thread.run.created",
        "thread.run.queued",
        "thread.run.in_progress",
    ]
    await wait_for(lambda: simulator_state.open_streams == 0)
    run = parse_events(received)[1][1]
    polled = await (await http.get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}", headers=HEADERS)).json()
    assert polled["status"] == "completed"  # the run went on server-side
    assert simulator_state.aborted_streams == 0  # the server, not the client, ended it


async def test_sdk_raises_on_a_dropped_stream(sdk: openai.AsyncOpenAI) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o")
    # Depending on where it notices, the SDK reports the broken body wrapped or as httpx2's own error.
    with pytest.raises((openai.APIConnectionError, httpx2.RemoteProtocolError)):
        async with sdk.beta.threads.create_and_run_stream(
            assistant_id=assistant.id, extra_headers={"X-Simulator-Fault": "drop"}
        ) as stream:
            await stream.until_done()


async def test_error_event_ends_the_stream_and_fails_the_run(http: TestClient, sdk: openai.AsyncOpenAI) -> None:
    assistant = await create_assistant(http)
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=fault("error-event:2"))
    events = parse_events(await response.read())  # a complete body: the stream ended cleanly
    assert [name for name, _ in events] == ["thread.created", "thread.run.created", "error"]
    assert events[-1][1]["error"]["type"] == "server_error"
    run = events[1][1]
    polled = await (await http.get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}", headers=HEADERS)).json()
    assert polled["status"] == "failed" and polled["last_error"]["code"] == "server_error"
    with pytest.raises(openai.APIError, match="The server had an error"):
        async with sdk.beta.threads.create_and_run_stream(
            assistant_id=assistant["id"], extra_headers={"X-Simulator-Fault": "error-event"}
        ) as stream:
            await stream.until_done()


async def test_hang_mid_stream_stalls_until_the_client_leaves(http: TestClient, simulator_state: Any) -> None:
    assistant = await create_assistant(http)
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=fault("hang-mid-stream:2"))
    first = await response.content.readuntil(b"\n\n")
    second = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"event: thread.created") and second.startswith(b"event: thread.run.created")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(response.content.readuntil(b"\n\n"), 0.1)
    assert simulator_state.open_streams == 1
    response.close()
    await wait_for(lambda: simulator_state.open_streams == 0)
    assert simulator_state.aborted_streams == 1


async def test_client_leaving_mid_stream_is_counted(http: TestClient, simulator_state: Any) -> None:
    assistant = await create_assistant(http)
    slow = {**HEADERS, "X-Simulator-Event-Delay-Ms": "20"}
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=slow)
    await response.content.readuntil(b"\n\n")
    assert simulator_state.open_streams == 1
    response.close()
    await wait_for(lambda: simulator_state.open_streams == 0)
    assert simulator_state.aborted_streams == 1
    [thread] = simulator_state.threads.values()
    assert next(iter(thread.runs.values())).status == "completed"


@pytest.mark.parametrize("tools", [[], [{"type": "file_search"}]])
async def test_run_failed_streamed_and_polled(sdk: openai.AsyncOpenAI, tools: list[Any]) -> None:
    assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=tools)
    headers = {"X-Simulator-Fault": "run-failed"}
    polled = await sdk.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, poll_interval_ms=1, extra_headers=headers
    )
    assert polled.status == "failed" and polled.last_error.code == "server_error"
    assert polled.failed_at is not None and polled.usage is not None
    async with sdk.beta.threads.create_and_run_stream(assistant_id=assistant.id, extra_headers=headers) as stream:
        await stream.until_done()
        events = [event.event async for event in stream] or []
        run = stream.current_run
    assert run.status == "failed" and run.usage is not None and run.last_error is not None
    steps = (await sdk.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id)).data
    assert [step.status for step in steps] == ["failed"]
    assert events == []  # all consumed by until_done


async def test_run_incomplete_streamed_and_polled(http: TestClient, sdk: openai.AsyncOpenAI) -> None:
    assistant = await create_assistant(http)
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=fault("run-incomplete"))
    events = parse_events(await response.read())
    names = [name for name, _ in events]
    assert names[-3:] == ["thread.run.step.completed", "thread.run.incomplete", "done"]
    run = events[-2][1]
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"} and run["usage"]["total_tokens"] == 73
    message = next(data for name, data in events if name == "thread.message.incomplete")
    text = message["content"][0]["text"]["value"]
    streamed = "".join(
        data["delta"]["content"][0]["text"]["value"] for name, data in events if name == "thread.message.delta"
    )
    assert message["status"] == "incomplete" and text == streamed and 0 < len(text) < 80
    polled = await sdk.beta.threads.create_and_run_poll(
        assistant_id=assistant["id"], poll_interval_ms=1, extra_headers={"X-Simulator-Fault": "run-incomplete"}
    )
    assert polled.status == "incomplete" and polled.usage is not None
    [reply] = (await sdk.beta.threads.messages.list(polled.thread_id)).data
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_tokens"


async def test_run_incomplete_after_tool_outputs(sdk: openai.AsyncOpenAI) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    assistant = await sdk.beta.assistants.create(model="gpt-4o", tools=[tool])
    headers = {"X-Simulator-Fault": "run-incomplete"}
    paused = await sdk.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, poll_interval_ms=1, extra_headers=headers
    )
    assert paused.status == "requires_action"  # no reply yet, nothing to cut
    call = paused.required_action.submit_tool_outputs.tool_calls[0]
    done = await sdk.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=paused.id,
        thread_id=paused.thread_id,
        tool_outputs=[{"tool_call_id": call.id, "output": "o"}],
        poll_interval_ms=1,
    )
    assert done.status == "incomplete"


async def test_event_delay_paces_the_stream(http: TestClient) -> None:
    assistant = await create_assistant(http)
    slow = {**HEADERS, "X-Simulator-Event-Delay-Ms": "5"}
    started = asyncio.get_running_loop().time()
    response = await http.post("/v1/threads/runs", json=run_body(assistant["id"]), headers=slow)
    chunks = await read_chunks(response)
    assert asyncio.get_running_loop().time() - started >= 0.005 * (len(chunks) - 1)
    assert all(chunk.endswith(b"\n\n") and chunk.count(b"\nevent: ") == 0 for chunk in chunks)  # one event per chunk
