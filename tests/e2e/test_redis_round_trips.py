"""How much a run call asks of Redis, as Redis's own `MONITOR` sees it over N calls of the official SDK:
the commands a replica sends (each a round trip, unless pipelined), apart from those its Lua scripts
run inside Redis. A run call's whole admission is one script; its claims and bind, its settlement
and the release of its slots are one script each."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as redis_client

from tests.support import TEAM_KEY, limited_tenant

CALLS = 10
# Every check a run call faces: request windows (tenant and key), concurrent runs (tenant and key), open
# streams, token budgets; all generous.
LIMITS = {
    "requests_per_minute": 10_000, "concurrent_runs": 1_000, "open_streams": 1_000, "tokens_per_minute": 10**9,
    "tokens_per_day": 10**12, "per_key": {"requests_per_minute": 10_000, "concurrent_runs": 1_000},
}  # fmt: skip


@contextlib.asynccontextmanager
async def monitored(url: str) -> AsyncIterator[Counter[str]]:
    """The commands clients send while inside, by name (a script's own commands are not counted)."""
    seen: Counter[str] = Counter()
    client = redis_client.from_url(url, decode_responses=True)
    async with client.monitor() as monitor:

        async def listen() -> None:
            async for command in monitor.listen():
                if command["client_type"] != "lua":
                    seen[command["command"].split(" ", 1)[0].lower()] += 1

        listening = asyncio.create_task(listen())
        await client.ping()  # MONITOR is on before the workload starts
        try:
            yield seen
            await asyncio.sleep(0.2)  # the last commands reach the monitor
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
    await client.aclose()


async def per_call(url: str, call: Callable[[], Awaitable[None]]) -> dict[str, float]:
    async with monitored(url) as seen:
        for _ in range(CALLS):
            await call()
    # (a new pooled connection says `hello`, and loads the scripts it has not run yet: not per call)
    return {name: count / CALLS for name, count in seen.items() if name not in ("ping", "monitor", "hello", "script")}


async def test_a_run_call_asks_redis_little(make_gateway, redis_server):
    gateway = await make_gateway(**limited_tenant(LIMITS, state={"backend": "redis", "url": redis_server.url}))
    client = gateway.async_client(api_key=TEAM_KEY)
    assistant = (await client.beta.assistants.create(model="gpt-4o")).id
    await client.beta.threads.create_and_run(assistant_id=assistant)  # scripts loaded, connections open

    async def streamed() -> None:
        async with client.beta.threads.create_and_run_stream(assistant_id=assistant) as stream:
            assert (await stream.get_final_run()).status == "completed"

    async def created() -> None:
        assert (await client.beta.threads.create_and_run(assistant_id=assistant)).status == "queued"

    stream_calls, create_calls = await per_call(redis_server.url, streamed), await per_call(redis_server.url, created)
    print(f"\nper streamed run call: {stream_calls}\nper non-streamed create: {create_calls}")
    for commands in (stream_calls, create_calls):
        assert set(commands) <= {"evalsha"}, commands  # scripts only: every step is one atomic round trip
    # The caller's ownership, the admission, the new thread and run claimed with the run bound, its
    # settlement, the call's end (leases back, the run's slot handed over). Before: 16.2 and 11 commands.
    assert stream_calls["evalsha"] <= 5.5  # (a stream may name its thread before its run: one more claim)
    assert create_calls["evalsha"] <= 4
