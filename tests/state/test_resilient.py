"""ResilientState in front of a real redis-server that dies, freezes and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest

from gateway.domain import Usage
from gateway.state import REQUESTS_PER_MINUTE, TOKENS_PER_DAY, PendingRun, StateUnavailable, TokenLimits, UsageRow
from gateway.state.factory import open_state
from gateway.state.memory import MemoryState
from gateway.state.redis import RedisState
from gateway.state.resilient import ResilientState
from gateway.state.semantics import utc_day
from tests.redis_server import RedisServer
from tests.support import REDIS_TIMEOUT_S, SteppedClock

TIMEOUT_S = 0.2
RETRY_S = 30.0  # on the stepped clock: no probe slips in before the test moves the clock


CLOCK = SteppedClock()  # the retry interval's clock; Redis's own timeouts stay real


def resilient(
    server: RedisServer, mode: Literal["fail_open", "fail_closed"], events: list[str]
) -> tuple[ResilientState, MemoryState]:
    fallback = MemoryState(1000)
    primary = RedisState(server.url, timeout_s=TIMEOUT_S)
    store = ResilientState(primary, fallback, mode, events.append, retry_interval_s=RETRY_S, clock=CLOCK)
    return store, fallback


async def timed(call: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


async def test_fail_open_counts_locally_and_recovers(redis_server: RedisServer) -> None:
    events: list[str] = []
    store, _ = resilient(redis_server, "fail_open", events)
    check = RedisState(redis_server.url, timeout_s=REDIS_TIMEOUT_S)  # another replica, to see what reached Redis
    try:
        assert (await store.hit_requests("a", "rpm:a", 2)).ok
        assert (await store.hit_requests("a", "rpm:a", 2)).ok
        assert not (await store.hit_requests("a", "rpm:a", 2)).ok  # Redis counted 2
        await store.claim("team-a", "thread_1")
        assert (await check.owners(["thread_1"]))[0] == "team-a"

        redis_server.stop()
        verdicts = []
        for _ in range(3):
            verdict, elapsed = await timed(store.hit_requests("a", "rpm:a", 2))
            assert elapsed < TIMEOUT_S + 0.3
            verdicts.append(verdict)
        assert [v.ok for v in verdicts] == [True, True, False]  # admitted, and counted locally
        assert verdicts[2].refused_by == REQUESTS_PER_MINUTE
        assert events == ["down"] and store.down
        await store.claim("team-b", "thread_2")
        assert (await store.owners(["thread_2"]))[0] == "team-b"
        assert (await store.owners(["thread_1"]))[0] is None  # Redis's claims are out of reach

        redis_server.start()  # empty: nothing was saved
        CLOCK.advance(RETRY_S)
        await store.claim("team-c", "thread_3")
        assert events == ["down", "up"] and not store.down
        assert (await check.owners(["thread_3"]))[0] == "team-c"  # went to Redis
        assert (await check.owners(["thread_2"]))[0] is None
        assert (await store.owners(["thread_2"]))[0] == "team-b"  # claimed locally, still known to this replica
        assert (await store.hit_requests("b", "rpm:b", 1)).ok
        assert not (await check.hit_requests("b", "rpm:b", 1)).ok  # counted in Redis
    finally:
        await store.close()
        await check.close()


async def test_fail_closed_refuses_while_down(redis_server: RedisServer) -> None:
    events: list[str] = []
    store, _ = resilient(redis_server, "fail_closed", events)
    try:
        assert (await store.acquire("a", "runs:a", "l1", 5, 60)).ok
        redis_server.stop()
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(StateUnavailable):
                await store.acquire("a", "runs:a", "l2", 5, 60)
            assert time.monotonic() - started < TIMEOUT_S + 0.3
        with pytest.raises(StateUnavailable):
            await store.reserve("r1", "team-a", 10, TokenLimits(per_day=100), time.time())
        assert events == ["down"]
        redis_server.start()
        CLOCK.advance(RETRY_S)
        assert (await store.acquire("a", "runs:a", "l2", 5, 60)).ok
        assert events == ["down", "up"]
    finally:
        await store.close()


async def test_a_frozen_redis_costs_one_timeout_per_retry_interval(redis_server: RedisServer) -> None:
    direct = RedisState(redis_server.url, timeout_s=TIMEOUT_S)
    events: list[str] = []
    store, _ = resilient(redis_server, "fail_open", events)
    try:
        await direct.claim("team-a", "thread_1")
        assert (await store.owners(["thread_1"]))[0] == "team-a"
        redis_server.pause()
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            (await direct.owners(["thread_1"]))[0]
        assert TIMEOUT_S * 0.9 < time.monotonic() - started < TIMEOUT_S + 0.3

        first, elapsed = await timed(store.hit_requests("a", "rpm:a", 10))
        assert first.ok and elapsed < TIMEOUT_S + 0.3
        assert events == ["down"]
        _, elapsed = await timed(asyncio.gather(*(store.hit_requests("a", "rpm:a", 10) for _ in range(20))))
        assert elapsed < TIMEOUT_S / 2  # within the retry interval: straight to the fallback, no waiting on Redis
        CLOCK.advance(RETRY_S)
        _, elapsed = await timed(store.owners(["thread_1"]))  # one probe, one timeout
        assert TIMEOUT_S * 0.9 < elapsed < TIMEOUT_S + 0.3

        redis_server.resume()
        CLOCK.advance(RETRY_S)
        assert (await store.owners(["thread_1"]))[0] == "team-a"
        assert events == ["down", "up"]
    finally:
        if not redis_server.running:
            redis_server.start()
        await store.close()
        await direct.close()


async def test_what_was_taken_locally_is_given_back_locally(redis_server: RedisServer) -> None:
    events: list[str] = []
    store, fallback = resilient(redis_server, "fail_open", events)
    check = RedisState(redis_server.url, timeout_s=REDIS_TIMEOUT_S)
    limits = TokenLimits(per_day=1000)
    now = time.time()
    try:
        redis_server.stop()
        assert (await store.acquire("a", "runs:a", "l1", 1, 600)).ok
        assert (await store.reserve("res1", "team-a", 400, limits, now)).ok
        assert (await store.reserve("res2", "team-a", 400, limits, now)).ok
        await store.bind("res2", PendingRun("run_2", "thread_2", "team-a", now, now))  # bound locally
        redis_server.start()
        CLOCK.advance(RETRY_S)

        await store.release("a", "runs:a", "l1")
        assert (await fallback.acquire("a", "runs:a", "l9", 1, 600)).ok  # the local slot was freed
        await store.bind("res1", PendingRun("run_1", "thread_1", "team-a", now, now))
        assert events == ["down", "up"]
        assert await fallback.tokens_remaining("team-a", limits, now) == {TOKENS_PER_DAY: 600}  # res1 given back
        # Both runs are on the reconciler's list: run_1 in Redis, run_2 locally.
        assert [r.run_id for r in await store.due_runs(now + 1, 10)] == ["run_1", "run_2"]
        assert await store.settle("run_1", "team-a", "gpt-4o", Usage(10, 20, 30), now)
        assert await store.settle("run_2", "team-a", "gpt-4o", Usage(1, 2, 3), now)
        assert not await check.settle("run_2", "team-a", "gpt-4o", Usage(1, 2, 3), now)  # once, in Redis
        assert await store.due_runs(now + 1, 10) == []
        assert await fallback.tokens_remaining("team-a", limits, now) == {TOKENS_PER_DAY: 997}  # run_2 counted here too
        assert await check.tokens_remaining("team-a", limits, now) == {TOKENS_PER_DAY: 1000 - 33}
        day = utc_day(now)
        assert await check.usage(None, day) == [UsageRow("team-a", "-", "gpt-4o", day, 2, 11, 22, 33, 0)]
    finally:
        await store.close()
        await check.close()


async def test_a_run_holds_a_slot_taken_locally_where_it_was_taken(redis_server: RedisServer) -> None:
    store, fallback = resilient(redis_server, "fail_open", [])
    try:
        redis_server.stop()
        assert (await store.acquire("a", "runs:a", "call1", 1, 600)).ok
        redis_server.start()
        CLOCK.advance(RETRY_S)
        await store.hold_for_run("a", "run_1", ["runs:a"], "call1", 600)  # the call ends: its run holds the local slot
        assert not (await fallback.acquire("a", "runs:a", "l9", 1, 600)).ok
        await store.release_run("a", "run_1")
        assert (await fallback.acquire("a", "runs:a", "l9", 1, 600)).ok
    finally:
        await store.close()


class Flaky:
    """A primary that fails on demand and counts how often it is asked."""

    def __init__(self, error: Exception | None = None) -> None:
        self.inner = MemoryState(100)
        self.error: Exception | None = error
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            self.calls += 1
            if self.error is not None:
                raise self.error
            return await method(*args)

        return call


@pytest.mark.parametrize("error", [StateUnavailable("down"), RuntimeError("a bug"), ConnectionResetError()])
async def test_only_state_unavailable_escapes(error: Exception) -> None:
    primary = Flaky(error)
    events: list[str] = []
    store = ResilientState(primary, MemoryState(100), "fail_closed", events.append, retry_interval_s=60)  # type: ignore[arg-type]
    for _ in range(5):
        with pytest.raises(StateUnavailable):
            (await store.owners(["thread_1"]))[0]
    assert primary.calls == 1 and events == ["down"]
    open_store = ResilientState(primary, MemoryState(100), "fail_open", retry_interval_s=60)  # type: ignore[arg-type]
    assert (await open_store.owners(["thread_1"]))[0] is None


async def test_recovers_after_the_retry_interval() -> None:
    primary = Flaky(StateUnavailable("down"))
    events: list[str] = []

    def on_outage(status: str) -> None:
        events.append(status)
        raise RuntimeError("a broken metric callback changes nothing")

    clock = SteppedClock()
    store = ResilientState(primary, MemoryState(100), "fail_open", on_outage, retry_interval_s=1.0, clock=clock)  # type: ignore[arg-type]
    await store.claim("team-a", "thread_1")
    await store.claim("team-a", "thread_2")
    assert primary.calls == 1
    primary.error = None
    await store.claim("team-a", "thread_3")
    assert primary.calls == 1  # not yet
    clock.advance(1.0)
    await store.claim("team-a", "thread_4")
    assert primary.calls == 2 and events == ["down", "up"]
    assert (await primary.inner.owners(["thread_4"]))[0] == "team-a"


async def test_open_state(redis_server: RedisServer) -> None:
    memory = open_state("memory", None, 0.1, "fail_open", 10)
    assert isinstance(memory, MemoryState)
    shared = open_state("redis", redis_server.url, 0.5, "fail_closed", 10)
    assert isinstance(shared, ResilientState)
    try:
        await shared.claim("team-a", "thread_1")
        assert (await shared.owners(["thread_1"]))[0] == "team-a"
    finally:
        await shared.close()
        await memory.close()
    with pytest.raises(ValueError):
        open_state("redis", None, 0.1, "fail_open", 10)
