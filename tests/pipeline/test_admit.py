"""Limits through the SDK: requests per minute, concurrency, token reservations and budgets, with
OpenAI's own 429 and x-ratelimit-* headers."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.config import ConfigError, parse_config
from tests.conftest import Gateway
from tests.support import both_protocols, limited_tenant, reconcile_until_settled

FN = {"type": "function", "function": {"name": "get_weather"}}


async def team(make_gateway, limits: dict[str, Any], **extra: Any) -> tuple[Gateway, openai.AsyncOpenAI, str]:
    gateway = await make_gateway(**limited_tenant(limits, **extra))
    client = gateway.async_client(api_key="sk-team")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    return gateway, client, assistant.id


@both_protocols
async def test_requests_per_minute_gives_the_sdk_a_rate_limit_error(make_gateway):
    # Creating the assistant was the first request of the minute (creations count, reads do not).
    _gateway, client, assistant = await team(make_gateway, {"requests_per_minute": 3})
    raw = await client.beta.threads.with_raw_response.create_and_run(assistant_id=assistant)
    assert (raw.headers["x-ratelimit-limit-requests"], raw.headers["x-ratelimit-remaining-requests"]) == ("3", "1")
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
    created = await stream.__anext__()
    assert created.event == "thread.run.created"
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    await stream.close()  # the client left mid-stream: the run goes on upstream, and holds its slot
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    run = created.data
    await client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=5)  # seen to its end
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


@both_protocols
async def test_a_run_holds_its_slot_until_it_is_seen_finished(make_gateway, simulator_state, backend):
    gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 2}, state=backend)
    first = await client.beta.threads.create_and_run(assistant_id=assistant)  # queued: the call ends, the run goes on
    await client.beta.threads.create_and_run(assistant_id=assistant)
    forwarded = len(simulator_state.requests)
    with pytest.raises(openai.RateLimitError, match="concurrent runs") as caught:
        await client.beta.threads.create_and_run(assistant_id=assistant)
    assert (caught.value.body["type"], caught.value.body["code"]) == ("requests", "rate_limit_exceeded")
    assert len(simulator_state.requests) == forwarded  # refused before the upstream heard of it
    assert [r.refused_by for r in await gateway.runs.wait(3)] == [None, None, "concurrent_runs"]
    done = await client.beta.threads.runs.poll(first.id, thread_id=first.thread_id, poll_interval_ms=5)
    assert done.status == "completed"
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)


@both_protocols
async def test_a_paused_run_keeps_its_slot_and_its_tool_outputs_are_admitted_at_the_limit(make_gateway, backend):
    _gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 1}, state=backend)
    tools = (await client.beta.assistants.create(model="gpt-4o", tools=[FN])).id
    async with client.beta.threads.create_and_run_stream(assistant_id=tools) as stream:
        paused = await stream.get_final_run()
    assert paused.status == "requires_action"
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    outputs = [{"tool_call_id": c.id, "output": "sun"} for c in paused.required_action.submit_tool_outputs.tool_calls]
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=outputs
    ) as stream:
        assert (await stream.get_final_run()).status == "completed"
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


@both_protocols
async def test_a_cancelled_run_gives_its_slot_back(make_gateway, backend):
    _gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 1}, state=backend)
    run = await client.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    await client.beta.threads.runs.cancel(run.id, thread_id=run.thread_id)
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


@both_protocols
async def test_a_run_nobody_polls_gives_its_slot_back_when_the_reconciler_sees_it_end(make_gateway, backend):
    gateway, client, assistant = await team(make_gateway, {"concurrent_runs": 1}, state=backend)
    await client.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError, match="concurrent runs"):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    await reconcile_until_settled(gateway)
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
    config = limited_tenant({"per_key": {"requests_per_minute": 2}})  # one for creating the assistant
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
    with pytest.raises(ConfigError, match="token and USD budgets need its policy"):
        parse_config(raw, env=env)
