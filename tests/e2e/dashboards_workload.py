"""A workload through the gateway that gives every dashboard panel data: four tenants with policies
(allows, denials, shadow denials, clamps), streamed, polled and tool-calling runs, upstream errors,
broken streams, error events, failed and incomplete runs, a rejected key and config reloads; token
and USD budgets (search), a model with no price (analytics), a requests-per-minute limit that refuses calls (batch), and an outage of the shared
state (Redis) that the gateway counts and recovers from."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import yaml

from gateway.telemetry.metrics import METRICS
from tests.conftest import Gateway
from tests.redis_server import RedisServer

ENV = {
    "UPSTREAM_KEY": "sk-upstream",
    "SEARCH_KEY": "sk-search",
    "SUPPORT_KEY": "sk-support",
    "ANALYTICS_KEY": "sk-analytics",
    "BATCH_KEY": "sk-batch",
    "ADMIN_KEY": "sk-admin",
}
HI = {"messages": [{"role": "user", "content": "hi"}]}
TWICE = {"messages": HI["messages"] * 2}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
FAST_POLL = 5
BATCH_RPM = 3  # batch's assistant takes one (creating counts), its third run call of a round is refused;
# the second round is all refused (same minute), so its assistant is made once per gateway
_BATCH_ASSISTANTS: weakref.WeakKeyDictionary[Gateway, str] = weakref.WeakKeyDictionary()


def write_config(path: Path, simulator_url: str, redis_url: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "upstream": {"base_url": simulator_url, "api_key": "${UPSTREAM_KEY}"},
                "tenants": {
                    "search": {"keys": ["${SEARCH_KEY}"], "policy": "search"},
                    "support": {"keys": ["${SUPPORT_KEY}"], "policy": "support"},
                    "analytics": {"keys": ["${ANALYTICS_KEY}"], "policy": "analytics"},
                    "batch": {"keys": ["${BATCH_KEY}"], "policy": "analytics"},
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
                # search's policy caps both token fields, so it can have token limits: each run reserves
                # 4000 + 1000 tokens until its usage is settled
                "limits": {
                    "tenants": {
                        "search": {
                            "tokens_per_minute": 100_000,
                            "tokens_per_day": 1_000_000,
                            "tokens_per_month": 20_000_000,
                            "usd_per_day": 50,
                            "usd_per_month": 1000,
                        },
                        "batch": {"requests_per_minute": BATCH_RPM},
                    },
                    "reconcile_interval_s": 0.5,  # the budget gauges are published on every pass
                },
                # fail_closed: during the outage the budget gauges keep Redis's last values (fail_open
                # would publish the local fallback's, nearly full, budgets). A generous timeout: a slow
                # first connection on a busy machine must not turn into a 503.
                "state": {"backend": "redis", "url": redis_url, "timeout_s": 1.0, "on_failure": "fail_closed"},
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
    cached = {"X-Simulator-Cached-Tokens": "16"}  # prompt caching: a share of the input priced as cached
    run = await _stream(threads.create_and_run_stream(assistant_id=assistant.id, thread=HI, extra_headers=cached))
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
    # never polled: its 5000 tokens stay reserved (the budget keeps falling) until the reconciler settles it
    assert (await threads.create_and_run(assistant_id=assistant.id, thread=HI)).status == "queued"
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
    unpriced = await client.beta.assistants.create(model="house-model-v1")  # no price: counted at $0
    assert (await _stream(threads.create_and_run_stream(assistant_id=unpriced.id, thread=HI))).status == "completed"
    await client.close()


async def batch(gateway: Gateway) -> None:
    """Requests per minute: calls past the limit get OpenAI's 429, the SDK's RateLimitError (no retries)."""
    client = gateway.async_client(api_key=ENV["BATCH_KEY"])
    if gateway not in _BATCH_ASSISTANTS:
        _BATCH_ASSISTANTS[gateway] = (await client.beta.assistants.create(model="gpt-4o-mini")).id
    refused = 0
    for _ in range(BATCH_RPM):
        try:
            await client.beta.threads.create_and_run(assistant_id=_BATCH_ASSISTANTS[gateway], thread=HI)
        except openai.RateLimitError as error:
            assert isinstance(error.body, dict) and error.body["type"] == "requests", error.body
            refused += 1
    assert refused
    await client.close()


async def strangers(gateway: Gateway) -> None:
    client = gateway.async_client(api_key="sk-nobody")
    await _expect(openai.AuthenticationError, client.beta.assistants.list())
    await client.close()


def _replace(path: Path, text: str) -> None:
    """Write the whole file at once: the gateway watches it, and must never read it half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


async def reloads(gateway: Gateway, path: Path) -> None:
    """One refused config (the old one keeps serving), then a good one."""
    good = path.read_text()
    admin = {"Authorization": f"Bearer {ENV['ADMIN_KEY']}"}
    async with aiohttp.ClientSession() as session:
        try:
            _replace(path, "policies: {search: {models: {allow: 42}}}\n")
            async with session.post(gateway.server.make_url("/admin/reload"), headers=admin) as response:
                assert response.status == 400, await response.text()
        finally:
            _replace(path, good)
        async with session.post(gateway.server.make_url("/admin/reload"), headers=admin) as response:
            assert response.status == 200, await response.text()


def _sample(gateway: Gateway, name: str, **labels: str) -> float | None:
    return gateway.app[METRICS].registry.get_sample_value(name, labels)


def _outages(gateway: Gateway, transition: str) -> float:
    return _sample(gateway, "gateway_state_outages_total", transition=transition) or 0.0


async def _until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def state_answers(gateway: Gateway) -> None:
    """Wait until Redis answers the gateway (no outage open) and the budget gauges are published: on a
    busy machine the very first Redis call (connect, load the scripts) can time out, and fail_closed
    refuses run calls until the next probe succeeds."""
    await _until(
        "the shared state to answer",
        lambda: (
            _outages(gateway, "down") == _outages(gateway, "up")
            and _sample(gateway, "gateway_budget_remaining_tokens", tenant="search", period="day") is not None
            and _sample(gateway, "gateway_budget_remaining_usd", tenant="search", period="day") is not None
        ),
    )


async def outage(gateway: Gateway, redis: RedisServer) -> None:
    """Redis stops answering (SIGSTOP: calls time out, nothing is lost) until the gateway has counted the
    outage, then answers again until it has counted the recovery; the reconciler's passes notice both."""
    down, up = _outages(gateway, "down"), _outages(gateway, "up")
    redis.pause()
    try:
        await _until("the outage to be counted", lambda: _outages(gateway, "down") > down)
    finally:
        redis.resume()
    await _until("the recovery to be counted", lambda: _outages(gateway, "up") > up)


async def workload(gateway: Gateway, config_path: Path, redis: RedisServer) -> None:
    await state_answers(gateway)
    await reloads(gateway, config_path)
    await asyncio.gather(search(gateway), support(gateway), analytics(gateway), batch(gateway), strangers(gateway))
    await outage(gateway, redis)
