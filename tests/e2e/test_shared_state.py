"""Several gateway replicas on one real redis-server: one shared limit, budgets that concurrency
cannot overshoot, and Redis outages handled by the configured mode, then recovered from."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from gateway.keys import STATE
from tests.conftest import Gateway
from tests.support import both_protocols, limited_tenant, scrape, team_tenant, value


def replica(redis_url: str, limits: dict[str, Any], on_failure: str = "fail_open") -> dict[str, Any]:
    # Generous timeout: the SDK shares this event loop in tests and may hold it while a Redis call waits.
    state = {"backend": "redis", "url": redis_url, "timeout_s": 1.0, "on_failure": on_failure}
    return limited_tenant(limits, state=state)


async def replicas(make_gateway, redis_server, limits: dict[str, Any], **kwargs: Any) -> list[Gateway]:
    return [await make_gateway(**replica(redis_server.url, limits, **kwargs)) for _ in range(2)]


async def assistant_on(gateway: Gateway) -> str:
    return (await gateway.async_client(api_key="sk-team").beta.assistants.create(model="gpt-4o")).id


@both_protocols
async def test_two_replicas_enforce_one_limit(make_gateway, redis_server):
    a, b = await replicas(make_gateway, redis_server, {"requests_per_minute": 4})
    assistant = await assistant_on(a)  # the first request of the minute: creating counts too
    clients = [a.async_client(api_key="sk-team"), b.async_client(api_key="sk-team")]
    for i in range(3):
        await clients[i % 2].beta.threads.create_and_run(assistant_id=assistant)
    for client in clients:
        with pytest.raises(openai.RateLimitError):
            await client.beta.threads.create_and_run(assistant_id=assistant)


@both_protocols
async def test_fifty_concurrent_runs_cannot_overshoot_a_budget(make_gateway, redis_server, simulator_state, protocol):
    # Every run reserves 2000 tokens; the budget holds exactly 7 of them.
    a, b = await replicas(make_gateway, redis_server, {"tokens_per_day": 14_000})
    assistant = await assistant_on(a)
    clients = [a.async_client(api_key="sk-team"), b.async_client(api_key="sk-team")]

    async def one(i: int) -> bool:
        try:
            await clients[i % 2].beta.threads.create_and_run(assistant_id=assistant)
        except openai.RateLimitError:
            return False
        return True

    admitted = await asyncio.gather(*(one(i) for i in range(50)))
    assert sum(admitted) == 7
    run_path = "/v1/responses" if protocol == "responses" else "/v1/threads/runs"
    created = [r for r in simulator_state.requests if r.method == "POST" and r.path == run_path]
    assert len(created) == 7


@both_protocols
async def test_redis_outage_fail_open_then_recovery(make_gateway, redis_server):
    a, _b = await replicas(make_gateway, redis_server, {"requests_per_minute": 2})
    assistant = await assistant_on(a)
    client = a.async_client(api_key="sk-team")
    await client.beta.threads.create_and_run(assistant_id=assistant)
    redis_server.stop()
    # fail_open: admitted and counted locally, so the local limit still holds.
    await client.beta.threads.create_and_run(assistant_id=assistant)
    await client.beta.threads.create_and_run(assistant_id=assistant)
    with pytest.raises(openai.RateLimitError):
        await client.beta.threads.create_and_run(assistant_id=assistant)
    redis_server.start()
    await asyncio.sleep(0.6)  # past the back-off before Redis is tried again
    await client.beta.threads.create_and_run(assistant_id=assistant)  # Redis again: one hit so far on it
    metrics = await scrape(a)
    assert value(metrics, "gateway_state_outages_total", transition="down") == 1.0
    assert value(metrics, "gateway_state_outages_total", transition="up") == 1.0


@both_protocols
async def test_redis_outage_fail_closed_answers_503_then_recovers(make_gateway, redis_server):
    a, _b = await replicas(make_gateway, redis_server, {"requests_per_minute": 100}, on_failure="fail_closed")
    assistant = await assistant_on(a)
    client = a.async_client(api_key="sk-team")
    redis_server.stop()
    started = asyncio.get_running_loop().time()
    with pytest.raises(openai.InternalServerError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistant)
    assert caught.value.status_code == 503 and caught.value.body["code"] == "state_unavailable"
    assert asyncio.get_running_loop().time() - started < 3  # bounded by timeout_s, never a hang
    redis_server.start()
    await asyncio.sleep(0.6)
    assistant = await assistant_on(a)  # (behind the facade, one made before is gone with Redis's unsaved data)
    assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"


async def test_readiness_follows_a_fail_closed_state(make_gateway, redis_server):
    a, _b = await replicas(make_gateway, redis_server, {"requests_per_minute": 100}, on_failure="fail_closed")
    client, ready = a.async_client(api_key="sk-team"), a.server.make_url("/readyz")
    async with aiohttp.ClientSession() as session:
        assert (await session.get(ready)).status == 200
        redis_server.stop()
        with pytest.raises(openai.InternalServerError):  # every limited call is refused now
            await client.beta.threads.create_and_run(assistant_id="asst_any")
        answer = await session.get(ready)
        assert (answer.status, (await answer.json())["status"]) == (503, "state_unavailable")
        redis_server.start()
        await asyncio.sleep(0.6)  # past the back-off: the probe finds it back, no traffic needed
        assert (await session.get(ready)).status == 200


async def test_fail_closed_forwards_no_creation_whose_owner_cannot_be_written(
    make_gateway, redis_server, simulator_state
):
    state = {"backend": "redis", "url": redis_server.url, "timeout_s": 1.0, "on_failure": "fail_closed"}
    gateway = await make_gateway(**team_tenant(state=state))  # no limits: admission never asks the state
    client = gateway.async_client(api_key="sk-team")
    redis_server.stop()
    for create in (
        lambda: client.beta.threads.create(),
        lambda: client.beta.threads.create_and_run(assistant_id="asst_1"),
    ):
        with pytest.raises(openai.InternalServerError) as caught:
            await create()
        assert (caught.value.status_code, caught.value.body["code"]) == (503, "state_unavailable")
    assert simulator_state.requests == []  # nothing was created upstream that no one would own
    redis_server.start()
    await asyncio.sleep(0.6)
    thread = await client.beta.threads.create()
    assert (await gateway.app[STATE].owners([thread.id]))[0] == "team"
