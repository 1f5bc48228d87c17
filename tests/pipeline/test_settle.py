"""Usage is counted exactly once per run, whichever way the client ran it: the tokens the gateway
records equal the tokens the simulator reported."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from tests.conftest import Gateway
from tests.support import (
    REDIS_TIMEOUT_S,
    Samples,
    both_protocols,
    listed_for_reconciling,
    read_until,
    reconcile_until_settled,
    run_with_tool_outputs,
    scrape,
    upstream_usage,
    value,
)

ENV = {"UP": "sk-upstream", "TEAM": "sk-team", "ADMIN": "sk-admin"}
MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}
FN = {"type": "function", "function": {"name": "get_weather"}}


async def accounted(make_gateway, state: dict[str, Any] | None = None) -> tuple[Gateway, openai.AsyncOpenAI]:
    gateway = await make_gateway(
        env=ENV,
        upstream={"api_key": "${UP}"},
        tenants={"team": {"keys": ["${TEAM}"]}},
        admin={"keys": ["${ADMIN}"]},
        state=state or {"backend": "memory"},
    )
    return gateway, gateway.async_client(api_key="sk-team")


async def ledger(gateway: Gateway) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            gateway.server.make_url("/admin/usage"), params={"tenant": "team"}, headers={"Authorization": "Bearer sk-admin"}
        )
        assert response.status == 200
        return (await response.json())["data"]


@both_protocols
async def test_every_way_of_running_is_counted_once(make_gateway, simulator_state, backend):
    gateway, client = await accounted(make_gateway, backend)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    runs: list[tuple[str, str]] = []

    async with client.beta.threads.create_and_run_stream(assistant_id=assistant, thread=MESSAGE) as stream:
        streamed = await stream.get_final_run()
    runs.append((streamed.thread_id, streamed.id))

    polled = await client.beta.threads.create_and_run_poll(assistant_id=assistant, thread=MESSAGE, poll_interval_ms=5)
    for _ in range(3):  # polls after the end, and a run list, must not count it again
        await client.beta.threads.runs.retrieve(polled.id, thread_id=polled.thread_id)
    await client.beta.threads.runs.list(polled.thread_id)
    runs.append((polled.thread_id, polled.id))

    abandoned = await client.beta.threads.create_and_run(
        assistant_id=assistant, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    )
    first = await abandoned.__anext__()
    second = await abandoned.__anext__()
    await abandoned.close()
    runs.append((first.data.id, second.data.id))

    never_polled = await client.beta.threads.create_and_run(assistant_id=assistant, thread=MESSAGE)
    runs.append((never_polled.thread_id, never_polled.id))

    tools = (await client.beta.assistants.create(model="gpt-4o", tools=[FN])).id
    paused, _ = await run_with_tool_outputs(client, tools)
    runs.append((paused.thread_id, paused.id))
    with pytest.raises(openai.NotFoundError):  # refused before any run existed: not a run
        await client.beta.threads.create_and_run(assistant_id="asst_nobodys", thread=MESSAGE)

    await reconcile_until_settled(gateway)
    rows = await ledger(gateway)
    assert sum(row["runs"] for row in rows) == len(runs)
    expected = sum(upstream_usage(simulator_state, thread, run) for thread, run in runs)
    assert sum(row["total_tokens"] for row in rows) == expected
    assert {row["model"] for row in rows} == {"gpt-4o"}
    # The metrics count what the ledger counts: each run once, in the status it ended in.
    metrics = await scrape(gateway)
    assert runs_by_status(metrics) == {"completed": len(runs)}
    for kind, field in (("input", "prompt_tokens"), ("output", "completion_tokens")):
        assert value(metrics, "gateway_tokens_total", tenant="team", model="gpt-4o", type=kind) == sum(r[field] for r in rows)


def runs_by_status(metrics: Samples) -> dict[str, float]:
    counted: dict[str, float] = {}
    for (name, labels), count in metrics.items():
        if name == "gateway_runs_total" and count:
            status = dict(labels)["status"]
            counted[status] = counted.get(status, 0) + count
    return counted


async def test_usage_api_needs_the_admin_key_and_a_real_date(make_gateway):
    gateway, _client = await accounted(make_gateway)
    async with aiohttp.ClientSession() as session:
        url = gateway.server.make_url("/admin/usage")
        assert (await session.get(url, headers={"Authorization": "Bearer sk-team"})).status == 401
        bad = await session.get(url, params={"since": "yesterday"}, headers={"Authorization": "Bearer sk-admin"})
        assert bad.status == 400 and (await bad.json())["error"]["param"] == "since"


@both_protocols
async def test_a_stream_left_before_it_named_its_run_is_still_counted(make_gateway, simulator_state, backend):
    """The client leaves after `thread.created`; the upstream goes on running (and billing) the run."""
    gateway, client = await accounted(make_gateway, backend)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    left = await client.beta.threads.create_and_run(
        assistant_id=assistant, thread=MESSAGE, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    )
    first = await left.__anext__()
    assert first.event == "thread.created"
    await left.close()
    (record,) = await gateway.runs.wait(1)
    assert record.client_gone and record.run_id is not None
    await listed_for_reconciling(gateway, record.run_id)
    await reconcile_until_settled(gateway)
    rows = await ledger(gateway)
    assert sum(row["runs"] for row in rows) == 1
    assert sum(row["total_tokens"] for row in rows) == upstream_usage(simulator_state, first.data.id, record.run_id)


@both_protocols
async def test_a_client_a_write_finds_gone_is_counted_499_and_its_run_still_settled(
    make_gateway, simulator_state, backend, monkeypatch
):
    """The client's connection is found closing by the relay's first write (aiohttp has not cancelled
    the handler yet; the unsent chunk names the run behind the facade): the call is counted as the
    client's gone (499), and the run it left is read on for its id and settled all the same."""
    gateway, client = await accounted(make_gateway, backend)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    real_write = web.StreamResponse.write

    async def write(response: web.StreamResponse, data: bytes) -> None:
        if response.content_type == "text/event-stream" and response.headers["X-Request-ID"].startswith("req_gw_"):
            raise ConnectionResetError("Cannot write to closing transport")  # as aiohttp says it
        await real_write(response, data)

    monkeypatch.setattr(web.StreamResponse, "write", write)
    left = await client.beta.threads.create_and_run(
        assistant_id=assistant, thread=MESSAGE, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    )
    assert [event async for event in left] == []
    (record,) = await gateway.runs.wait(1)
    assert record.client_gone and record.run_id is not None and record.thread_id is not None
    counted = {dict(labels)["status"]: n for (name, labels), n in (await scrape(gateway)).items()
               if name == "gateway_requests_total" and ("route", "/v1/threads/runs") in labels}  # fmt: skip
    assert counted == {"499": 1}
    await listed_for_reconciling(gateway, record.run_id)
    await reconcile_until_settled(gateway)
    rows = await ledger(gateway)
    assert sum(row["runs"] for row in rows) == 1
    assert sum(row["total_tokens"] for row in rows) == upstream_usage(simulator_state, record.thread_id, record.run_id)


async def test_a_client_that_leaves_while_its_run_is_settled_has_it_counted_all_the_same(make_gateway, redis_server):
    """The SDK closes its connection just after the stream's end, while the gateway is settling the run
    (the settle waits on Redis): aiohttp cancels the handler then, and the settlement must go on, its
    run counted in the ledger and in the runs metric alike."""
    state = {"backend": "redis", "url": redis_server.url, "timeout_s": REDIS_TIMEOUT_S}
    gateway, client = await accounted(make_gateway, state)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    stream = await client.beta.threads.create_and_run(
        assistant_id=assistant, thread=MESSAGE, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    )
    try:
        async for event in stream:
            if event.event == "thread.run.completed":
                redis_server.pause()  # what the stream's end sets off (the settle) waits for Redis
        await asyncio.sleep(0.1)  # the handler is settling
        await client.close()  # the connection closes under it
        await asyncio.sleep(0.1)
    finally:
        redis_server.resume()

    async def counted() -> tuple[float, int]:
        runs = value(await scrape(gateway), "gateway_runs_total", tenant="team", model="gpt-4o", status="completed")
        return runs, sum(row["runs"] for row in await ledger(gateway))

    assert await read_until(counted, lambda both: both == (1, 1)) == (1, 1)
