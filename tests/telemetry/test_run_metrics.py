"""What a platform team reads of its runs on /metrics: how they ended and why (polled ones too), their
tool calls, their pauses for tool outputs, their queue time, cached tokens, runs in flight and the
upstream's own rate-limit headroom; after a workload through the official SDK."""

from __future__ import annotations

import pytest

from tests.support import TEAM_KEY, run_with_tool_outputs, scrape, team_tenant, value

FN = {"type": "function", "function": {"name": "get_weather"}}
CACHED = 20


@pytest.mark.parametrize("protocol", ["assistants", "responses"])
async def test_runs_are_told_by_their_ending_tools_pauses_and_cache(make_gateway, protocol):
    gateway = await make_gateway(**team_tenant())
    client = gateway.async_client(api_key=TEAM_KEY)
    tools = (await client.beta.assistants.create(model="gpt-4o", tools=[FN])).id
    interpreter = (await client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])).id
    plain = (await client.beta.assistants.create(model="gpt-4o")).id

    paused, final = await run_with_tool_outputs(client, tools)
    assert final.status == "completed"
    calls = paused.required_action.submit_tool_outputs.tool_calls
    async with client.beta.threads.create_and_run_stream(assistant_id=interpreter) as stream:
        assert (await stream.get_final_run()).status == "completed"
    async with client.beta.threads.create_and_run_stream(
        assistant_id=plain, extra_headers={"X-Simulator-Cached-Tokens": str(CACHED)}
    ) as stream:
        assert (await stream.get_final_run()).status == "completed"
    failed = await client.beta.threads.create_and_run_poll(  # seen ending by a poll, not a stream
        assistant_id=plain, poll_interval_ms=5, extra_headers={"X-Simulator-Fault": "run-failed"}
    )
    assert failed.status == "failed"
    async with client.beta.threads.create_and_run_stream(
        assistant_id=plain, extra_headers={"X-Simulator-Fault": "run-incomplete"}
    ) as stream:
        assert (await stream.get_final_run()).status == "incomplete"
    queued = await client.beta.threads.create_and_run(assistant_id=plain)  # still running when scraped
    assert queued.status == "queued"

    m = await scrape(gateway)
    team = {"tenant": "team"}
    assert value(m, "gateway_runs_unsuccessful_total", **team, status="failed", reason="server_error") == 1
    assert value(m, "gateway_runs_unsuccessful_total", **team, status="incomplete", reason="max_completion_tokens") == 1
    assert value(m, "gateway_tool_calls_total", **team, type="function") == len(calls)
    assert value(m, "gateway_tool_calls_total", **team, type="code_interpreter") >= 1
    assert value(m, "gateway_requires_action_total", **team) == 1
    assert value(m, "gateway_requires_action_wait_seconds_count", **team) == 1
    assert value(m, "gateway_run_queued_seconds_count", **team) == 5  # each streamed run, the tool round's once
    cached = value(m, "gateway_tokens_total", **team, model="gpt-4o", type="cached_input")
    assert cached == CACHED if protocol == "assistants" else cached >= CACHED  # (recorded responses cached some)
    started, ended = value(m, "gateway_runs_started_total", **team, model="gpt-4o"), sum(
        v for (name, labels), v in m.items() if name == "gateway_runs_total" and ("tenant", "team") in labels
    )
    assert (started, ended) == (6, 5)  # one run in flight
    if protocol == "assistants":  # (the facade's replies are its own: they carry no upstream rate limits yet)
        headroom = value(m, "gateway_upstream_ratelimit_remaining", **team, kind="requests")
        assert 0 < headroom < 5000
