"""One behaviour, two backends: every test runs on `MemoryState` and on `RedisState` (a real redis-server).

`replicas(n)` (tests/state/conftest.py) gives n stores sharing state.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.domain import TokenLimits, Usage
from gateway.state import (
    CONCURRENT_RUNS,
    FORGOTTEN,
    OPEN_STREAMS,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_DAY,
    TOKENS_PER_MINUTE,
    TOKENS_PER_MONTH,
    PendingRun,
    UsageRow,
)
from gateway.state.memory import MemoryState
from gateway.state.redis import TENANTS_REFRESH_S, RedisState
from tests.redis_server import RedisServer
from tests.state.stores import T0, Replicas, one, run
from tests.support import REDIS_TIMEOUT_S, SteppedClock

# Ownership.


async def test_first_claim_wins(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.owners(["thread_1"]))[0] is None
    await a.claim("team-a", "thread_1", "run_1")
    await b.claim("team-b", "thread_1", "run_2")
    await b.claim("team-b", None, None)  # nothing named: nothing happens
    assert (await a.owners(["thread_1"]))[0] == "team-a"
    assert (await b.owners(["thread_1"]))[0] == "team-a"
    await b.claim("team-b", "thread_2")
    assert (await a.owners(["thread_2"]))[0] == "team-b"


async def test_ownership_is_bounded() -> None:
    store = MemoryState(max_owned_objects=2)
    for n in range(2):
        await store.claim("team-a", f"thread_{n}")
    assert await store.owners(["thread_1", "never-claimed"]) == ["team-a", None]
    await store.claim("team-a", "thread_3")  # pushes thread_0 out
    # Once a claim was dropped, no object without an owner can be told from a forgotten one: both deny.
    assert await store.owners(["thread_0", "never-claimed", "thread_3"]) == [FORGOTTEN, FORGOTTEN, "team-a"]


async def test_redis_ownership_is_bounded_least_recently_used_first(redis_server: RedisServer) -> None:
    store = RedisState(redis_server.url, timeout_s=REDIS_TIMEOUT_S, max_owned_objects=2)
    try:
        await store.claim("team-a", "thread_0")
        await asyncio.sleep(0.002)
        await store.claim("team-a", "thread_1")
        await asyncio.sleep(0.002)
        assert (await store.owners(["thread_0"]))[0] == "team-a"  # now the most recently used
        await asyncio.sleep(0.002)
        await store.claim("team-a", "thread_2")
        assert await store.owners(["thread_1", "never-claimed"]) == [FORGOTTEN, FORGOTTEN]
        assert await store.owners(["thread_0", "thread_2"]) == ["team-a", "team-a"]
    finally:
        await store.close()


# Requests per minute.


async def test_requests_per_minute(replicas: Replicas) -> None:
    a, b = await replicas(2)
    for n, store in enumerate([a, b, a]):
        verdict = await store.hit_requests("team-a", "rpm:team-a", 3)
        assert verdict.ok and verdict.refused_by is None
        assert verdict.window is not None
        assert (verdict.window.limit, verdict.window.remaining) == (3, 2 - n)
        assert 0 < verdict.window.reset_s <= 60  # until the sliding window frees a slot
    refused = await b.hit_requests("team-a", "rpm:team-a", 3)
    assert not refused.ok
    assert refused.refused_by == REQUESTS_PER_MINUTE
    assert refused.window is not None and refused.window.remaining == 0
    # A sliding window counter: this minute's 3 weigh fully until it ends, then leave over the next one.
    assert 0 < refused.retry_after_s <= 80
    assert (await a.hit_requests("team-b", "rpm:team-b", 3)).ok  # another key, its own window
    # A reload that raises the limit keeps what was counted.
    raised = await a.hit_requests("team-a", "rpm:team-a", 5)
    assert raised.ok and raised.window is not None and raised.window.remaining == 1


# Concurrency leases.


async def test_leases_refuse_at_the_limit_and_free_on_release(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.acquire("team-a", "runs:team-a", "l1", 2, 60)).ok
    second = await b.acquire("team-a", "runs:team-a", "l2", 2, 60)
    assert second.ok and second.window is not None and second.window.remaining == 0
    refused = await a.acquire("team-a", "runs:team-a", "l3", 2, 60)
    assert not refused.ok
    assert refused.refused_by == CONCURRENT_RUNS
    assert 0 < refused.retry_after_s <= 1.0
    assert (await a.acquire("team-a", "runs:team-a", "l1", 2, 60)).ok  # a lease already held is renewed, not counted twice
    await b.release("team-a", "runs:team-a", "l1")
    await b.release("team-a", "runs:team-a", "never-held")
    assert (await a.acquire("team-a", "runs:team-a", "l3", 2, 60)).ok
    streams = await a.acquire("team-a", "streams:team-a", "s1", 0, 60)
    assert not streams.ok and streams.refused_by == OPEN_STREAMS


async def test_leases_expire(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.acquire("team-a", "runs:team-a", "l1", 1, 0.15)).ok
    assert not (await b.acquire("team-a", "runs:team-a", "l2", 1, 0.15)).ok
    await asyncio.sleep(0.2)
    assert (await b.acquire("team-a", "runs:team-a", "l2", 1, 60)).ok


async def test_a_run_holds_the_slots_its_call_handed_over_until_it_is_released(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.acquire("team-a", "runs:team-a", "call1", 1, 60)).ok
    await a.hold_for_run("team-a", "run_1", ["runs:team-a"], "call1", 60)  # the call ends, its run goes on
    await a.release("team-a", "runs:team-a", "call1")  # giving back the moved lease changes nothing
    assert not (await b.acquire("team-a", "runs:team-a", "call2", 1, 60)).ok
    await a.hold_for_run("team-a", "run_1", ["runs:team-a"], "call3", 60)  # a later call of the same run: still one slot
    second = await b.acquire("team-a", "runs:team-a", "call2", 2, 60)
    assert second.ok and second.window is not None and second.window.remaining == 0
    await b.release("team-a", "runs:team-a", "call2")
    await b.release_run("team-a", "run_1")  # seen ended, by another replica
    assert (await a.acquire("team-a", "runs:team-a", "call2", 1, 60)).ok


async def test_a_released_run_is_not_held_again(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.acquire("team-a", "runs:team-a", "call1", 1, 60)).ok
    await b.release_run("team-a", "run_1")  # a poll saw it finished before its call had ended
    await a.hold_for_run("team-a", "run_1", ["runs:team-a"], "call1", 60)
    assert (await b.acquire("team-a", "runs:team-a", "call2", 1, 60)).ok  # the call's slot was given back all the same


async def test_a_run_slot_expires(replicas: Replicas) -> None:
    a, b = await replicas(2)
    await a.hold_for_run("team-a", "run_1", ["runs:team-a", "runs:team-a:fp"], "call1", 0.15)  # no lease taken: held anyway
    assert not (await b.acquire("team-a", "runs:team-a:fp", "call2", 1, 60)).ok
    await asyncio.sleep(0.2)
    assert (await b.acquire("team-a", "runs:team-a", "call2", 1, 60)).ok
    assert (await b.acquire("team-a", "runs:team-a:fp", "call2", 1, 60)).ok


# Token reservations.


async def test_reserve_is_all_or_nothing_and_names_the_limit(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_minute=1000, per_day=1500, per_month=2000)
    ok = await store.reserve("r1", "team-a", 800, limits, T0)
    assert ok.ok and ok.window is not None
    assert (ok.window.limit, ok.window.remaining, ok.window.reset_s) == (1000, 200, 30)

    refused = await store.reserve("r2", "team-a", 300, limits, T0)
    assert (refused.ok, refused.refused_by, refused.retry_after_s) == (False, TOKENS_PER_MINUTE, 30)
    assert refused.window is not None and refused.window.remaining == 200
    remaining = {TOKENS_PER_MINUTE: 200, TOKENS_PER_DAY: 700, TOKENS_PER_MONTH: 1200}
    assert await store.tokens_remaining("team-a", limits, T0) == remaining  # nothing taken

    minute_later = T0 + 60
    assert (await store.reserve("r3", "team-a", 300, limits, minute_later)).ok  # day 1100, month 1100
    refused = await store.reserve("r4", "team-a", 500, limits, minute_later)
    assert (refused.ok, refused.refused_by) == (False, TOKENS_PER_DAY)
    assert refused.retry_after_s == 12 * 3600 - 90  # until midnight UTC
    assert await store.tokens_remaining("team-a", limits, minute_later) == {
        TOKENS_PER_MINUTE: 700,
        TOKENS_PER_DAY: 400,
        TOKENS_PER_MONTH: 900,
    }

    next_day = T0 + 86400
    refused = await store.reserve("r5", "team-a", 950, limits, next_day)
    assert (refused.ok, refused.refused_by) == (False, TOKENS_PER_MONTH)
    assert refused.retry_after_s == datetime(2026, 4, 1, tzinfo=UTC).timestamp() - next_day
    assert (await store.reserve("r6", "team-a", 900, limits, next_day)).ok
    assert await store.tokens_remaining("team-b", limits, next_day) == {
        TOKENS_PER_MINUTE: 1000,
        TOKENS_PER_DAY: 1500,
        TOKENS_PER_MONTH: 2000,
    }
    # Only the configured limits are reported; a window only for tokens per minute.
    day_only = TokenLimits(per_day=5000)
    verdict = await store.reserve("r7", "team-a", 10, day_only, next_day)
    assert verdict.ok and verdict.window is None
    assert await store.tokens_remaining("team-a", day_only, next_day) == {TOKENS_PER_DAY: 5000 - 910}
    assert await store.tokens_remaining("team-a", TokenLimits(), next_day) == {}


async def test_reserving_the_same_id_twice_charges_once(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_day=1000)
    assert (await store.reserve("r1", "team-a", 600, limits, T0)).ok
    assert (await store.reserve("r1", "team-a", 600, limits, T0)).ok
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 400}


async def test_concurrent_reservations_never_overshoot(replicas: Replicas) -> None:
    stores = await replicas(2)
    limits = TokenLimits(per_minute=1000, per_day=100_000)
    verdicts = await asyncio.gather(*(stores[n % 2].reserve(f"r{n}", "team-a", 100, limits, T0) for n in range(50)))
    assert sum(v.ok for v in verdicts) == 10
    assert {v.refused_by for v in verdicts if not v.ok} == {TOKENS_PER_MINUTE}
    assert await stores[0].tokens_remaining("team-a", limits, T0) == {TOKENS_PER_MINUTE: 0, TOKENS_PER_DAY: 99_000}


async def test_settle_exactly_once_and_refund(replicas: Replicas) -> None:
    a, b = await replicas(2)
    limits = TokenLimits(per_minute=10_000, per_day=5000)
    assert (await a.reserve("res1", "team-a", 1000, limits, T0)).ok
    await a.bind("res1", run("run_1", T0))
    usage = Usage(prompt_tokens=100, completion_tokens=200, total_tokens=300)
    assert await a.settle("run_1", "team-a", "gpt-4o", usage, T0 + 5)
    assert await a.tokens_remaining("team-a", limits, T0 + 5) == {TOKENS_PER_MINUTE: 9700, TOKENS_PER_DAY: 4700}
    # The reconciler on another replica sees the same run: nothing more happens.
    assert not await b.settle("run_1", "team-a", "gpt-4o", usage, T0 + 6)
    assert not await b.settle("run_1", "team-a", "gpt-4o", None, T0 + 6)
    assert await b.tokens_remaining("team-a", limits, T0 + 6) == {TOKENS_PER_MINUTE: 9700, TOKENS_PER_DAY: 4700}
    assert await b.usage(None, "2026-03-01") == [UsageRow("team-a", "-", "gpt-4o", "2026-03-10", 1, 100, 200, 300, 0)]
    assert await a.due_runs(T0 + 1000, 10) == []


async def test_concurrent_settles_count_once(replicas: Replicas) -> None:
    a, b = await replicas(2)
    limits = TokenLimits(per_day=5000)
    assert (await a.reserve("res1", "team-a", 1000, limits, T0)).ok
    await a.bind("res1", run("run_1", T0))
    usage = Usage(10, 20, 30)
    results = await asyncio.gather(*(s.settle("run_1", "team-a", "gpt-4o", usage, T0) for s in [a, b] * 10))
    assert sum(results) == 1
    assert await a.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 4970}
    assert await a.usage("team-a", "2026-03-10") == [UsageRow("team-a", "-", "gpt-4o", "2026-03-10", 1, 10, 20, 30, 0)]


async def test_usage_above_the_reservation_is_charged(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_day=5000)
    assert (await store.reserve("res1", "team-a", 1000, limits, T0)).ok
    await store.bind("res1", run("run_1", T0))
    assert await store.settle("run_1", "team-a", "gpt-4o", Usage(1000, 500, 1500), T0)
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 3500}


async def test_settle_without_usage_charges_the_reservation(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_day=5000)
    assert (await store.reserve("res1", "team-a", 1000, limits, T0)).ok
    await store.bind("res1", run("run_1", T0))
    assert await store.settle("run_1", "team-a", "gpt-4o", None, T0 + 3600)
    assert await store.tokens_remaining("team-a", limits, T0 + 3600) == {TOKENS_PER_DAY: 4000}
    # The ledger counts the run but no tokens: none were reported.
    assert await store.usage("team-a", "2026-03-10") == [UsageRow("team-a", "-", "gpt-4o", "2026-03-10", 1, 0, 0, 0, 0)]


async def test_settle_without_a_reservation_charges_the_usage_now(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_minute=1000, per_day=5000)
    assert await store.settle("run_x", "team-a", "gpt-4o", Usage(40, 10, 50), T0)
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_MINUTE: 950, TOKENS_PER_DAY: 4950}
    assert await store.settle("run_y", "team-a", "gpt-4o", None, T0)  # nothing known, nothing charged
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_MINUTE: 950, TOKENS_PER_DAY: 4950}
    # A run bound without a reservation (the tenant had no token limits then) is listed and charged.
    await store.bind("no-such-reservation", run("run_z", T0))
    assert [r.run_id for r in await store.due_runs(T0 + 1, 10)] == ["run_z"]
    assert await store.settle("run_z", "team-a", "gpt-4o", Usage(100, 100, 200), T0)
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_MINUTE: 750, TOKENS_PER_DAY: 4750}
    assert await store.due_runs(T0 + 1, 10) == []


async def test_cancel_gives_the_reservation_back(replicas: Replicas) -> None:
    a, b = await replicas(2)
    limits = TokenLimits(per_minute=1000, per_day=5000, per_month=9000)
    assert (await a.reserve("res1", "team-a", 1000, limits, T0)).ok
    assert not (await a.reserve("res2", "team-a", 1, limits, T0)).ok
    await b.cancel("team-a", "res1")
    await b.cancel("team-a", "res1")  # twice: still once
    await b.cancel("team-a", "never-reserved")
    assert await a.tokens_remaining("team-a", limits, T0) == {
        TOKENS_PER_MINUTE: 1000,
        TOKENS_PER_DAY: 5000,
        TOKENS_PER_MONTH: 9000,
    }
    assert (await a.reserve("res2", "team-a", 1000, limits, T0)).ok


async def test_bind_after_settle_gives_the_reservation_back(replicas: Replicas) -> None:
    store = await one(replicas)
    limits = TokenLimits(per_day=5000)
    assert (await store.reserve("res1", "team-a", 1000, limits, T0)).ok
    assert await store.settle("run_1", "team-a", "gpt-4o", Usage(1, 2, 3), T0)  # the stream ended first
    await store.bind("res1", run("run_1", T0))
    assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 4997}
    assert await store.due_runs(T0 + 10, 10) == []


# The reconciler's list.


async def test_due_runs_and_touch(replicas: Replicas) -> None:
    a, b = await replicas(2)
    for n, at in enumerate([T0 + 100, T0 + 200, T0 + 300], start=1):
        await a.bind(f"res{n}", run(f"run_{n}", at, tenant=f"team-{n}"))
    assert await b.due_runs(T0 + 250, 10) == [run("run_1", T0 + 100, "team-1"), run("run_2", T0 + 200, "team-2")]
    assert await b.due_runs(T0 + 250, 1) == [run("run_1", T0 + 100, "team-1")]
    assert await b.due_runs(T0 + 200, 10) == [run("run_1", T0 + 100, "team-1")]  # strictly before
    await b.touch("team-1", "run_1", T0 + 400)
    await b.touch("team-1", "unknown", T0 + 400)
    assert await a.due_runs(T0 + 250, 10) == [run("run_2", T0 + 200, "team-2")]
    assert await b.settle("run_2", "team-2", "gpt-4o", Usage(1, 1, 2), T0 + 401)
    touched = PendingRun("run_1", "thread_run_1", "team-1", T0 + 100, T0 + 400)
    assert await a.due_runs(T0 + 1000, 10) == [run("run_3", T0 + 300, "team-3"), touched]
    await a.touch("team-2", "run_2", T0 + 500)  # settled: stays off the list
    assert [r.run_id for r in await a.due_runs(T0 + 1000, 10)] == ["run_3", "run_1"]


async def test_many_due_runs_come_oldest_first(replicas: Replicas) -> None:
    store = await one(replicas)
    for n in range(30):
        await store.bind(f"res{n}", run(f"run_{n:02}", T0 + (29 - n)))
    due = await store.due_runs(T0 + 100, 25)
    assert [r.run_id for r in due] == [f"run_{n:02}" for n in range(29, 4, -1)]


# The ledger.


async def test_usage_rows(replicas: Replicas) -> None:
    a, b = await replicas(2)
    day = 86400
    settles = [
        ("r1", "team-b", "gpt-4o", Usage(10, 5, 15), T0),
        ("r2", "team-a", "gpt-4o-mini", Usage(1, 1, 2), T0),
        ("r3", "team-a", "gpt-4o", Usage(100, 50, 150), T0),
        ("r4", "team-a", "gpt-4o", Usage(200, 100, 300), T0 + 60),
        ("r5", "team-a", "gpt-4o", Usage(7, 3, 10), T0 - day),
        ("r6", "team-a", "gpt-4o", None, T0 + day),
    ]
    for n, (run_id, tenant, model, usage, at) in enumerate(settles):
        assert await [a, b][n % 2].settle(run_id, tenant, model, usage, at)
    assert await a.usage(None, "2026-03-01") == [
        UsageRow("team-a", "-", "gpt-4o", "2026-03-09", 1, 7, 3, 10, 0),
        UsageRow("team-a", "-", "gpt-4o", "2026-03-10", 2, 300, 150, 450, 0),
        UsageRow("team-a", "-", "gpt-4o-mini", "2026-03-10", 1, 1, 1, 2, 0),
        UsageRow("team-b", "-", "gpt-4o", "2026-03-10", 1, 10, 5, 15, 0),
        UsageRow("team-a", "-", "gpt-4o", "2026-03-11", 1, 0, 0, 0, 0),
    ]
    assert await b.usage("team-b", "2026-03-01") == [UsageRow("team-b", "-", "gpt-4o", "2026-03-10", 1, 10, 5, 15, 0)]
    assert await b.usage("team-a", "2026-03-11") == [UsageRow("team-a", "-", "gpt-4o", "2026-03-11", 1, 0, 0, 0, 0)]
    assert await b.usage(None, "2026-03-12") == []
    assert await b.usage("team-c", "2026-01-01") == []


async def test_odd_names_survive_the_ledger(replicas: Replicas) -> None:
    store = await one(replicas)
    assert await store.settle("r1", 'team "a"|:b', "ft:gpt-4o:org:x|y", Usage(1, 2, 3), T0)
    assert await store.usage(None, "2026-03-10") == [
        UsageRow('team "a"|:b', "-", "ft:gpt-4o:org:x|y", "2026-03-10", 1, 1, 2, 3, 0)
    ]


# Adapter records (the Responses facade's runs).


async def test_a_record_one_replica_puts_another_reads_until_it_expires(replicas: Replicas) -> None:
    a, b = await replicas(2)
    await a.put_record("run", "run_1", b'{"status":"requires_action"}', 60)
    assert await b.get_record("run", "run_1") == b'{"status":"requires_action"}'
    assert await b.get_record("run", "run_2") is None and await b.get_record("thread", "run_1") is None
    await b.put_record("run", "run_1", b'{"status":"completed"}', 0.05)  # the newest write wins
    assert await a.get_record("run", "run_1") == b'{"status":"completed"}'
    await asyncio.sleep(0.1)
    assert await a.get_record("run", "run_1") is None


async def test_lists_keep_every_id_added_at_once_in_order_until_they_expire(replicas: Replicas) -> None:
    a, b = await replicas(2)
    await asyncio.gather(*(store.add_to_list("thread_runs", "conv_1", f"run_{n}", 60) for n in range(20)
                           for store in (a if n % 2 else b,)))  # fmt: skip
    assert sorted(await a.list_members("thread_runs", "conv_1")) == sorted(f"run_{n}" for n in range(20))
    await a.add_to_list("assistants", "team", "asst_1", 60)
    await b.add_to_list("assistants", "team", "asst_2", 60)
    await a.add_to_list("assistants", "team", "asst_1", 60)  # once
    assert await b.list_members("assistants", "team") == ["asst_1", "asst_2"]
    await b.remove_from_list("assistants", "team", "asst_1")
    assert await a.list_members("assistants", "team") == ["asst_2"]
    assert await a.list_members("assistants", "other") == []
    await a.add_to_list("assistants", "brief", "asst_3", 0.05)
    await asyncio.sleep(0.1)
    assert await b.list_members("assistants", "brief") == []


async def test_a_tenants_runs_are_found_again_after_redis_lost_its_list(redis_server: RedisServer) -> None:
    """Redis restarted empty (no persistence) under a running replica: runs bound afterwards are on the
    reconciler's list again once the replica re-adds its tenant, at its next bind or settle a
    `TENANTS_REFRESH_S` later, not only after the replica restarts."""
    clock = SteppedClock()
    store = RedisState(redis_server.url, timeout_s=REDIS_TIMEOUT_S, max_owned_objects=1000, monotonic=clock)
    try:
        await store.bind("res1", run("run_1", T0))
        redis_server.stop()
        redis_server.start()
        await store.bind("res2", run("run_2", T0))
        clock.advance(TENANTS_REFRESH_S)
        await store.bind("res3", run("run_3", T0))
        assert [r.run_id for r in await store.due_runs(T0 + 10, 10)] == ["run_2", "run_3"]
    finally:
        await store.close()
