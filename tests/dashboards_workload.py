"""A workload through the gateway that gives every dashboard panel data: three tenants with policies
(allows, denials, shadow denials, clamps), streamed, polled and tool-calling runs, upstream errors,
broken streams, error events, failed and incomplete runs, a rejected key and config reloads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openai
import yaml

from tests.conftest import Gateway

ENV = {
    "UPSTREAM_KEY": "sk-upstream",
    "SEARCH_KEY": "sk-search",
    "SUPPORT_KEY": "sk-support",
    "ANALYTICS_KEY": "sk-analytics",
    "ADMIN_KEY": "sk-admin",
}
HI = {"messages": [{"role": "user", "content": "hi"}]}
TWICE = {"messages": HI["messages"] * 2}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
FAST_POLL = 5


def write_config(path: Path, simulator_url: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "upstream": {"base_url": simulator_url, "api_key": "${UPSTREAM_KEY}"},
                "tenants": {
                    "search": {"keys": ["${SEARCH_KEY}"], "policy": "search"},
                    "support": {"keys": ["${SUPPORT_KEY}"], "policy": "support"},
                    "analytics": {"keys": ["${ANALYTICS_KEY}"], "policy": "analytics"},
                },
                "policies": {
                    # enforced: only gpt-4o; token caps injected or clamped on every run (decision `modify`)
                    "search": {
                        "models": {"allow": ["gpt-4o"]},
                        "tokens": {
                            "max_prompt_tokens": {"max": 8000, "action": "clamp", "default": 4000},
                            "max_completion_tokens": {"max": 1000, "action": "clamp"},
                        },
                    },
                    # sampling rules rolled out in shadow, the message count enforced
                    "support": {
                        "shadow_rules": ["sampling.*"],
                        "sampling": {"temperature": {"max": 1}},
                        "content": {"max_messages": 1},
                    },
                    # permissive: plain `allow` decisions
                    "analytics": {"models": {"deny": ["o1"]}},
                },
                "admin": {"keys": ["${ADMIN_KEY}"]},
            }
        )
    )


async def _stream(stream_manager: Any) -> Any:
    async with stream_manager as stream:
        await stream.until_done()
        return stream.current_run


async def _expect(error: type[Exception], call: Any) -> None:
    try:
        result = await call
        if isinstance(result, openai.AsyncStream):
            async for _event in result:
                pass
    except error:
        return
    raise AssertionError(f"expected {error.__name__}")


async def search(gateway: Gateway) -> None:
    client = gateway.async_client(api_key=ENV["SEARCH_KEY"])
    threads = client.beta.threads
    assistant = await client.beta.assistants.create(model="gpt-4o")
    run = await _stream(threads.create_and_run_stream(assistant_id=assistant.id, thread=HI))
    assert run.status == "completed"
    polled = await threads.create_and_run_poll(
        assistant_id=assistant.id, thread=HI, max_completion_tokens=5000, poll_interval_ms=FAST_POLL
    )
    assert polled.status == "completed" and polled.max_completion_tokens == 1000  # clamped
    await _expect(
        openai.PermissionDeniedError, threads.create_and_run(assistant_id=assistant.id, model="gpt-3.5-turbo")
    )
    fault = {"X-Simulator-Fault": "http-500"}
    await _expect(openai.InternalServerError, threads.create_and_run(assistant_id=assistant.id, extra_headers=fault))
    fault = {"X-Simulator-Fault": "http-429"}
    await _expect(openai.RateLimitError, threads.create_and_run(assistant_id=assistant.id, extra_headers=fault))
    await client.close()


async def support(gateway: Gateway) -> None:
    client = gateway.async_client(api_key=ENV["SUPPORT_KEY"])
    threads = client.beta.threads
    assistant = await client.beta.assistants.create(model="gpt-4o")
    shadowed = await _stream(threads.create_and_run_stream(assistant_id=assistant.id, thread=HI, temperature=1.5))
    assert shadowed.status == "completed"  # a shadow denial is forwarded
    for fault in ("drop:3", "error-event"):
        call = threads.create_and_run(
            assistant_id=assistant.id, stream=True, extra_headers={"X-Simulator-Fault": fault}
        )
        await _expect(openai.APIError, call)
    failed = await threads.create_and_run_poll(
        assistant_id=assistant.id, poll_interval_ms=FAST_POLL, extra_headers={"X-Simulator-Fault": "run-failed"}
    )
    assert failed.status == "failed"
    incomplete = await _stream(
        threads.create_and_run_stream(assistant_id=assistant.id, extra_headers={"X-Simulator-Fault": "run-incomplete"})
    )
    assert incomplete.status == "incomplete"
    await _expect(openai.PermissionDeniedError, threads.create_and_run(assistant_id=assistant.id, thread=TWICE))
    await client.close()


async def analytics(gateway: Gateway) -> None:
    client = gateway.async_client(api_key=ENV["ANALYTICS_KEY"])
    threads = client.beta.threads
    assistant = await client.beta.assistants.create(model="gpt-4o-mini", tools=[WEATHER])
    paused = await _stream(threads.create_and_run_stream(assistant_id=assistant.id, thread=HI))
    assert paused.status == "requires_action"
    calls = paused.required_action.submit_tool_outputs.tool_calls
    outputs = [{"tool_call_id": call.id, "output": "sunny"} for call in calls]
    resumed = await _stream(
        threads.runs.submit_tool_outputs_stream(run_id=paused.id, thread_id=paused.thread_id, tool_outputs=outputs)
    )
    assert resumed.status == "completed"
    plain = await client.beta.assistants.create(model="gpt-4o-mini")
    thread = await threads.create()
    again = await _stream(threads.runs.stream(thread_id=thread.id, assistant_id=plain.id))
    assert again.status == "completed"
    queued = await threads.create_and_run(assistant_id=plain.id, model="gpt-4o-mini", thread=HI)
    assert queued.status == "queued"
    await client.close()


async def strangers(gateway: Gateway) -> None:
    client = gateway.async_client(api_key="sk-nobody")
    await _expect(openai.AuthenticationError, client.beta.assistants.list())
    await client.close()


async def reloads(gateway: Gateway, path: Path) -> None:
    """One refused config (the old one keeps serving), then a good one."""
    good = path.read_text()
    admin = {"Authorization": f"Bearer {ENV['ADMIN_KEY']}"}
    async with aiohttp.ClientSession() as session:
        try:
            path.write_text("policies: {search: {models: {allow: 42}}}\n")
            async with session.post(gateway.server.make_url("/admin/reload"), headers=admin) as response:
                assert response.status == 400, await response.text()
        finally:
            path.write_text(good)
        async with session.post(gateway.server.make_url("/admin/reload"), headers=admin) as response:
            assert response.status == 200, await response.text()


async def workload(gateway: Gateway, config_path: Path) -> None:
    await reloads(gateway, config_path)
    await asyncio.gather(search(gateway), support(gateway), analytics(gateway), strangers(gateway))
