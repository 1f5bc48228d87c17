"""Limits through the SDK: requests per minute, concurrency, token reservations and budgets, with
OpenAI's own 429 and x-ratelimit-* headers."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from gateway.config import ConfigError, parse_config
from tests.conftest import Gateway
from tests.support import both_protocols, limited_tenant


async def team(make_gateway, limits: dict[str, Any]) -> tuple[Gateway, openai.AsyncOpenAI, str]:
    gateway = await make_gateway(**limited_tenant(limits))
    client = gateway.async_client(api_key="sk-team")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    return gateway, client, assistant.id


@both_protocols
async def test_requests_per_minute_gives_the_sdk_a_rate_limit_error(make_gateway):
    _gateway, client, assistant = await team(make_gateway, {"requests_per_minute": 2})
    raw = await client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant)
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("2", "1")
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    await client.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistant)
    error, headers = caught.value.body, caught.value.response.headers
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-remaining-requests"] == "0"


@both_protocols
async def test_concurrent_runs_and_open_streams(make_gateway):
    _gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 2, "open_streams": 1})
    slow = {"X-Simulator-Event-Delay-Ms": "20"}
    stream = await client.beta.threads.create_and_run(assistant_id=assistant, stream=True, extra_headers=slow)
    await stream.__anext__()
    with pytest.raises(openai.RateLimitError, match="open streams"):
        await client.beta.threads.create_and_run(assistant_id=assistant, stream=True)
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"  # not a stream
    async for _event in stream:
        pass
    stream = await client.beta.threads.create_and_run(assistant_id=assistant, stream=True)  # the slot came back
    async for _event in stream:
        pass


@both_protocols
async def test_concurrent_run_slots_are_refused_while_held(make_gateway):
    _gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 1})
    slow = {"X-Simulator-Event-Delay-Ms": "20"}
    stream = await client.beta.threads.create_and_run(assistant_id=assistant, stream=True, extra_headers=slow)
    await stream.__anext__()
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    await stream.close()
    await asyncio.sleep(0.1)
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


@both_protocols
async def test_a_budget_reserves_the_worst_case_and_settles_the_real_usage(make_gateway):
    # Each run may cost 1000 + 1000 tokens: two fit in 4500, a third must wait for a settlement.
    _gateway, client, assistant = await team(make_gateway, {"tokens_per_day": 4500})
    first = await client.beta.threads.create_and_run(assistant_id=assistant)
    raw = await client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant)
    assert raw.headers.get("x-gateway-policy-modified") == "max_prompt_tokens,max_completion_tokens"
    with pytest.raises(openai.RateLimitError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistant)
    assert caught.value.body["type"] == "tokens" and "tokens per day" in caught.value.body["message"]
    done = await client.beta.threads.runs.poll(first.id, thread_id=first.thread_id, poll_interval_ms=5)
    assert done.status == "completed" and done.usage.total_tokens < 2000
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


@both_protocols
async def test_tokens_per_minute_window_in_headers(make_gateway):
    _gateway, client, assistant = await team(make_gateway, {"tokens_per_minute": 10000})
    raw = await client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant)
    assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "8000"


@both_protocols
async def test_per_key_limits(make_gateway):
    config = limited_tenant({"per_key": {"requests_per_minute": 1}})
    config["env"] = {**config["env"], "TEAM2": "sk-team-2"}
    config["tenants"]["team"]["keys"].append("${TEAM2}")
    gateway = await make_gateway(**config)
    one, two = gateway.async_client(api_key="sk-team"), gateway.async_client(api_key="sk-team-2")
    assistant = (await one.beta.assistants.create(model="gpt-4o")).id
    await one.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError):
        await one.beta.threads.create_and_run(assistant_id=assistant)
    assert (await two.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


def test_budgets_need_finite_runs():
    raw = limited_tenant({"tokens_per_day": 1000})
    raw["policies"] = {"team": {}}
    env = raw.pop("env")
    with pytest.raises(ConfigError, match="token limits need its policy"):
        parse_config(raw, env=env)
