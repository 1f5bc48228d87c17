"""Cost in dollars through the SDK: the ledger, /admin/usage, the metric and the audit agree with the
price table to the cent, and USD budgets reserve a run's worst case and settle its cost."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.support import (
    REDIS_TIMEOUT_S,
    TEAM_KEY,
    both_protocols,
    limited_tenant,
    read_until,
    run_with_tool_outputs,
    scrape,
)

ADMIN = "sk-admin"
FN = {"type": "function", "function": {"name": "get_weather"}}
# USD per 1M tokens; a cached price apart from the input one, so cached tokens show in the total.
PRICE = {"input": Decimal("2.50"), "cached_input": Decimal("1.25"), "output": Decimal("10.00")}
CACHED = 20  # prompt tokens the simulator reports as cached, on the runs that ask for it
WORST_CASE = 1000 * PRICE["input"] + 1000 * PRICE["output"]  # µUSD: both token caps are 1000 (tests.support)


def priced(limits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config = limited_tenant(limits, pricing={"gpt-4o": {k: str(v) for k, v in PRICE.items()}}, **extra)
    config["env"] = {**config["env"], "ADMIN": ADMIN}
    config["admin"] = {"keys": ["${ADMIN}"]}
    return config


def expected_micros(usage: Any, cached: int) -> int:
    """What the price table says a run's usage costs, worked out here apart from the gateway's code."""
    cost = (usage.prompt_tokens - cached) * PRICE["input"] + cached * PRICE["cached_input"]
    cost += usage.completion_tokens * PRICE["output"]
    return int(cost.quantize(Decimal(1), rounding=ROUND_HALF_UP))


async def admin_usage(gateway: Gateway) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            gateway.server.make_url("/admin/usage"), headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert answer.status == 200
        return list((await answer.json())["data"])


async def settled_usage(gateway: Gateway, runs: int) -> list[dict[str, Any]]:
    """/admin/usage once it counts `runs` runs."""
    return await read_until(lambda: admin_usage(gateway), lambda rows: sum(row["runs"] for row in rows) >= runs)


async def mixed_workload(client: openai.AsyncOpenAI) -> dict[str, int]:
    """A streamed run, a streamed run with cached tokens, a polled run and a tool-call run (five run
    calls): each run's id → how many of its prompt tokens were cached."""
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    tools = (await client.beta.assistants.create(model="gpt-4o", tools=[FN])).id
    cached: dict[str, int] = {}
    async with client.beta.threads.create_and_run_stream(assistant_id=assistant) as stream:
        cached[(await stream.get_final_run()).id] = 0
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant, extra_headers={"X-Simulator-Cached-Tokens": str(CACHED)}
    ) as stream:
        cached[(await stream.get_final_run()).id] = CACHED
    polled = await client.beta.threads.create_and_run_poll(assistant_id=assistant, poll_interval_ms=5)
    cached[polled.id] = 0
    paused, final = await run_with_tool_outputs(client, tools)
    assert final.status == "completed"
    cached[paused.id] = 0
    return cached


@both_protocols
async def test_the_ledger_usage_metric_and_audit_agree_with_the_price_table(make_gateway, backend, tmp_path: Path):
    audit = tmp_path / "audit.jsonl"
    gateway = await make_gateway(**priced({}, state=backend, audit={"sink": "file", "path": str(audit)}))
    client = gateway.async_client(api_key=TEAM_KEY)
    cached = await mixed_workload(client)
    expected: dict[str, int] = {}
    for run_id, cached_tokens in cached.items():
        thread = next(r.thread_id for r in gateway.runs.finished if r.run_id == run_id)
        run = await client.beta.threads.runs.retrieve(run_id, thread_id=thread)
        assert run.status == "completed" and run.usage is not None
        expected[run_id] = expected_micros(run.usage, cached_tokens)
        if cached_tokens:  # the price table's cached price makes a difference the totals must show
            assert expected[run_id] < expected_micros(run.usage, 0)
    total = sum(expected.values())

    rows = await settled_usage(gateway, runs=4)
    assert [(row["tenant"], row["model"], row["runs"]) for row in rows] == [("team", "gpt-4o", 4)]
    assert rows[0]["key"].startswith("fp_")
    assert round(rows[0]["cost_usd"] * 1_000_000) == total

    metric = sum(v for (name, labels), v in (await scrape(gateway)).items() if name == "gateway_cost_usd_total")
    assert round(metric * 1_000_000) == total

    await gateway.runs.wait(5)  # every run call recorded its outcome (the last one just after its answer)
    await gateway.server.close()  # the audit log stops: it writes everything accepted
    outcomes = [r for r in map(orjson.loads, audit.read_bytes().splitlines()) if r["kind"] == "outcome"]
    audited: dict[str, int] = defaultdict(int)
    for outcome in outcomes:
        if outcome["cost_usd"] is not None:
            audited[outcome["run_id"]] = round(outcome["cost_usd"] * 1_000_000)
    # Every call that saw its run end says what it cost; the polled run's calls never saw its usage.
    polled = [run_id for run_id in cached if run_id not in audited]
    assert len(polled) == 1 and audited == {r: c for r, c in expected.items() if r not in polled}


@both_protocols
async def test_a_usd_budget_admits_exactly_the_runs_whose_worst_case_fits(make_gateway, backend):
    budget = Decimal(4) * WORST_CASE + WORST_CASE / 2  # room for four worst cases and a half
    # fail_closed: a Redis call that times out on a busy machine must fail the test, not be admitted
    # against a local fallback's budget (fail_open's way); a generous timeout, so it does not.
    state = {**backend, "on_failure": "fail_closed", "timeout_s": REDIS_TIMEOUT_S} if backend["backend"] == "redis" else backend
    gateway = await make_gateway(**priced({"usd_per_day": float(budget / 1_000_000)}, state=state))
    client = gateway.async_client(api_key=TEAM_KEY)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    # the pool's connections opened before the burst (each a first connect under load)
    await asyncio.gather(*(client.beta.assistants.retrieve(assistant) for _ in range(10)))
    results = await asyncio.gather(
        *(client.beta.threads.create_and_run(assistant_id=assistant) for _ in range(10)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 6 and len(results) - len(refused) == 4
    error = refused[0].body
    assert (error["type"], error["code"]) == ("usd", "rate_limit_exceeded")
    assert "usd per day" in error["message"] and "$" in error["message"]
    # A settled run gives back what it did not cost: another worst case fits.
    first = next(r for r in results if not isinstance(r, BaseException))
    done = await client.beta.threads.runs.poll(first.id, thread_id=first.thread_id, poll_interval_ms=5)
    assert done.status == "completed"
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


async def test_each_key_has_its_own_usd_budget(make_gateway):
    config = priced({"per_key": {"usd_per_day": float(WORST_CASE * 3 / 2 / 1_000_000)}})
    config["env"]["TEAM2"] = "sk-team-2"
    config["tenants"]["team"]["keys"].append("${TEAM2}")
    gateway = await make_gateway(**config)
    one, two = gateway.async_client(api_key=TEAM_KEY), gateway.async_client(api_key="sk-team-2")
    assistant = (await one.beta.assistants.create(model="gpt-4o")).id
    await one.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError, match="per key.usd per day") as caught:
        await one.beta.threads.create_and_run(assistant_id=assistant)
    assert caught.value.body["type"] == "usd"
    assert (await two.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


async def test_a_model_with_no_price_is_refused_under_a_usd_budget_and_counted_otherwise(make_gateway):
    gateway = await make_gateway(**priced({"usd_per_day": 10.0}))
    client = gateway.async_client(api_key=TEAM_KEY)
    unpriced = (await client.beta.assistants.create(model="gpt-unpriced-preview")).id
    with pytest.raises(openai.BadRequestError) as caught:
        await client.beta.threads.create_and_run(assistant_id=unpriced)
    assert (caught.value.body["code"], caught.value.body["param"]) == ("model_not_priced", "model")
    assert "gpt-unpriced-preview" in caught.value.body["message"]

    free = await make_gateway(**priced({}))
    client = free.async_client(api_key=TEAM_KEY)
    unpriced = (await client.beta.assistants.create(model="gpt-unpriced-preview")).id
    async with client.beta.threads.create_and_run_stream(assistant_id=unpriced) as stream:
        assert (await stream.get_final_run()).status == "completed"
    samples = await scrape(free)
    assert samples[("gateway_unpriced_runs_total", frozenset({("tenant", "team"), ("model", "other")}))] == 1
    assert sum(v for (name, _), v in samples.items() if name == "gateway_cost_usd_total") == 0
