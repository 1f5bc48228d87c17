"""Scrape /metrics after an SDK workload: the counters equal what happened."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import Gateway
from tests.support import both_protocols, scrape, value

ENV = {"UP": "sk-upstream", "ALICE": "sk-alice", "BOB": "sk-bob"}
TEAMS = {
    "env": ENV,
    "upstream": {"api_key": "${UP}"},
    "tenants": {"alice": {"keys": ["${ALICE}"]}, "bob": {"keys": ["${BOB}"], "policy": "strict"}},
    "policies": {"strict": {"models": {"allow": ["gpt-4o"]}}},
}
MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}
GENAI = {"gen_ai_operation_name": "invoke_agent", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o",
         "gen_ai_response_model": "gpt-4o", "server_address": "127.0.0.1", "gateway_tenant": "alice"}  # fmt: skip


@pytest.fixture
async def teams(make_gateway) -> Gateway:
    return await make_gateway(**TEAMS)


@both_protocols
async def test_counters_match_an_sdk_workload(teams):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    assistant = await alice.beta.assistants.create(model="gpt-4o")
    bobs = await bob.beta.assistants.create(model="gpt-4o")
    deltas: Counter[str] = Counter()
    usage = {"input": 0, "output": 0}
    for _ in range(2):
        async with alice.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=MESSAGE) as stream:
            async for event in stream:
                deltas[event.event] += 1
            final = await stream.get_final_run()
        usage["input"] += final.usage.prompt_tokens
        usage["output"] += final.usage.completion_tokens
    await alice.beta.threads.create_and_run(assistant_id=assistant.id, thread=MESSAGE)
    with pytest.raises(openai.PermissionDeniedError):
        await bob.beta.threads.create_and_run(assistant_id=bobs.id, model="gpt-4o-mini")
    with pytest.raises(openai.InternalServerError):
        await alice.beta.threads.create_and_run(
            assistant_id=assistant.id, extra_headers={"X-Simulator-Fault": "http-500"}
        )
    await teams.runs.wait(5)

    m = await scrape(teams)
    run_route = "/v1/threads/runs"
    assert value(m, "gateway_requests_total", route=run_route, method="POST", status="200", tenant="alice") == 3
    assert value(m, "gateway_requests_total", route=run_route, method="POST", status="403", tenant="bob") == 1
    assert value(m, "gateway_requests_total", route=run_route, method="POST", status="500", tenant="alice") == 1
    assert value(m, "gateway_requests_total", route="/v1/assistants", method="POST", status="200", tenant="alice") == 1
    assert value(m, "gateway_runs_total", tenant="alice", model="gpt-4o", status="completed") == 2
    assert value(m, "gateway_runs_total", tenant="alice", model="gpt-4o", status="queued") == 0  # counted when it ends
    for kind, count in usage.items():
        assert value(m, "gateway_tokens_total", tenant="alice", model="gpt-4o", type=kind) == count
        genai = {**GENAI, "gen_ai_token_type": kind}
        assert value(m, "gen_ai_client_token_usage_count", **genai) == 2
        assert value(m, "gen_ai_client_token_usage_sum", **genai) == count
    assert value(m, "gateway_policy_decisions_total", tenant="bob", decision="deny", rule="models.allow") == 1
    assert value(m, "gateway_upstream_errors_total", kind="server_error") == 1
    for event_type in ("thread.message.delta", "thread.run.completed", "thread.created"):
        assert value(m, "gateway_stream_events_total", type=event_type) == deltas[event_type]
    assert value(m, "gateway_active_streams", tenant="alice") == 0
    assert value(m, "gen_ai_server_time_to_first_token_seconds_count", **GENAI) == 2
    # The conventions' client view of the upstream: streamed calls only; error_type only on the failed call.
    assert value(m, "gen_ai_client_operation_time_to_first_chunk_seconds_count", **GENAI) == 2
    assert value(m, "gen_ai_client_operation_time_per_output_chunk_seconds_count", **GENAI) == 2
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **GENAI) == 3  # two streams, one create
    unknown = {**GENAI, "gen_ai_request_model": "unknown", "gen_ai_response_model": "unknown"}  # no run: no model
    assert value(m, "gen_ai_client_operation_duration_seconds_count", **unknown, error_type="500") == 1
    assert not [key for key in m if key[0].startswith("gen_ai_") and ("error_type", "") in key[1]]
    assert value(m, "gateway_runs_started_total", tenant="alice", model="gpt-4o") == 3
    assert value(m, "gateway_overhead_seconds_count", route="create_thread_and_run") == 4  # denied runs never forward


@both_protocols
async def test_labels_stay_bounded(teams, simulator):
    alice = teams.async_client(api_key="sk-alice")
    assistant = await alice.beta.assistants.create(model="my-fine-tune-123")
    await alice.beta.threads.create_and_run(assistant_id=assistant.id, model="ft:gpt-4o:acme:xyz")
    run = await alice.beta.threads.create_and_run_poll(assistant_id=assistant.id, poll_interval_ms=5)
    await alice.beta.threads.messages.list(run.thread_id)
    async with aiohttp.ClientSession() as session:
        await session.get(
            teams.server.make_url("/v1/threads/thread_abc/../../etc"), headers={"Authorization": "Bearer x"}
        )
    m = await scrape(teams)
    labels: set[tuple[str, str]] = {pair for (_name, pairs) in m for pair in pairs}
    values = {v for k, v in labels if k in ("route", "model", "tenant", "gen_ai_request_model")}
    assert "other" in values
    an_id = re.compile(r"(thread|run|msg|asst|step|conv|resp)_[A-Za-z0-9]{16,}")
    assert not any(an_id.search(v) or "ft:" in v or "fine-tune" in v for v in values)
    assert "/v1/threads/{id}/messages" in values and "/v1/threads/{id}/runs/{id}" in values
    assert value(m, "gateway_requests_total", route="/v1/threads/{id}/messages", method="GET", status="200",
                 tenant="alice") == 1  # fmt: skip
    assert {v for k, v in labels if k == "tenant"} <= {"alice", "bob", "other", "unauthenticated"}


def test_scrape_helper_reads_labels():
    sample: dict[Any, float] = {("x_total", frozenset({("a", "1")})): 2.0}
    assert value(sample, "x_total", a="1") == 2.0 and value(sample, "x_total", a="2") == 0.0
