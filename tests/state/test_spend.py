"""USD budgets and the cost ledger, on both backends: what a run costs is reserved, settled and
recorded exactly as its tokens are (see gateway/state/semantics.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.domain import TokenLimits, Usage, UsdLimits
from gateway.state import (
    KEY_USD_PER_DAY,
    TOKENS_PER_DAY,
    USD_PER_DAY,
    USD_PER_MONTH,
    Spend,
    UsageRow,
)
from tests.state.stores import T0, Replicas, one, run

NO_TOKENS = TokenLimits()
DOLLAR = 1_000_000  # µUSD


def spend(micros: int, key: str = "fp_a", day: int | None = None, month: int | None = None,
          key_day: int | None = None) -> Spend:  # fmt: skip
    return Spend(micros, key, UsdLimits(day, month), UsdLimits(key_day))


async def test_a_usd_budget_refuses_naming_itself_and_takes_nothing(replicas: Replicas) -> None:
    store = await one(replicas)
    assert (await store.reserve("r1", "team-a", 0, NO_TOKENS, T0, spend(3 * DOLLAR, day=5 * DOLLAR))).ok
    refused = await store.reserve("r2", "team-a", 0, NO_TOKENS, T0, spend(3 * DOLLAR, day=5 * DOLLAR))
    assert (refused.ok, refused.refused_by, refused.retry_after_s) == (False, USD_PER_DAY, 12 * 3600 - 30)
    assert refused.budget is not None and (refused.budget.limit, refused.budget.remaining) == (5 * DOLLAR, 2 * DOLLAR)
    assert await store.usd_spent("team-a", T0) == (3 * DOLLAR, 3 * DOLLAR)
    # The month, then the key's own budget; another key of the tenant has its own.
    refused = await store.reserve("r3", "team-a", 0, NO_TOKENS, T0, spend(DOLLAR, month=3 * DOLLAR))
    assert refused.refused_by == USD_PER_MONTH
    assert refused.retry_after_s == datetime(2026, 4, 1, tzinfo=UTC).timestamp() - T0
    assert (await store.reserve("r4", "team-a", 0, NO_TOKENS, T0, spend(DOLLAR, key_day=DOLLAR, key="fp_b"))).ok
    refused = await store.reserve("r5", "team-a", 0, NO_TOKENS, T0, spend(DOLLAR, key_day=DOLLAR, key="fp_b"))
    assert refused.refused_by == KEY_USD_PER_DAY
    assert await store.usd_spent("team-a", T0, key="fp_b") == (DOLLAR, DOLLAR)
    assert await store.usd_spent("team-a", T0) == (4 * DOLLAR, 4 * DOLLAR)


async def test_tokens_and_dollars_are_reserved_together_or_not_at_all(replicas: Replicas) -> None:
    store = await one(replicas)
    tokens = TokenLimits(per_day=1000)
    refused = await store.reserve("r1", "team-a", 100, tokens, T0, spend(2 * DOLLAR, day=DOLLAR))
    assert refused.refused_by == USD_PER_DAY
    assert await store.tokens_remaining("team-a", tokens, T0) == {TOKENS_PER_DAY: 1000}  # no tokens taken
    refused = await store.reserve("r2", "team-a", 2000, tokens, T0, spend(1, day=DOLLAR))
    assert refused.refused_by == TOKENS_PER_DAY
    assert await store.usd_spent("team-a", T0) == (0, 0)  # no dollars taken


async def test_concurrent_usd_reservations_never_overshoot(replicas: Replicas) -> None:
    stores = await replicas(2)
    verdicts = await asyncio.gather(
        *(stores[n % 2].reserve(f"r{n}", "team-a", 0, NO_TOKENS, T0, spend(DOLLAR, day=7 * DOLLAR)) for n in range(30))
    )
    assert sum(v.ok for v in verdicts) == 7
    assert await stores[1].usd_spent("team-a", T0) == (7 * DOLLAR, 7 * DOLLAR)


async def test_settle_turns_the_worst_case_into_the_cost_once(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.reserve("res1", "team-a", 0, NO_TOKENS, T0, spend(5 * DOLLAR, day=10 * DOLLAR))).ok
    await a.bind("res1", run("run_1", T0, key="fp_a"))
    usage = Usage(1000, 100, 1100)
    assert await b.settle("run_1", "team-a", "gpt-4o", usage, T0 + 5, key="fp_other", cost=3_500)
    assert not await a.settle("run_1", "team-a", "gpt-4o", usage, T0 + 6, cost=3_500)
    assert await a.usd_spent("team-a", T0) == (3_500, 3_500)
    assert await a.usd_spent("team-a", T0, key="fp_a") == (3_500, 3_500)
    # The ledger row is the key the run was bound with, not the settling call's.
    assert await a.usage(None, "2026-03-01") == [
        UsageRow("team-a", "fp_a", "gpt-4o", "2026-03-10", 1, 1000, 100, 1100, 3_500)
    ]


async def test_an_unreserved_cost_is_charged_now_and_a_lost_run_keeps_its_reservation(replicas: Replicas) -> None:
    store = await one(replicas)
    assert await store.settle("run_x", "team-a", "gpt-4o", Usage(10, 10, 20), T0, key="fp_a", cost=700)
    assert await store.usd_spent("team-a", T0) == (700, 700)
    assert await store.usd_spent("team-a", T0, key="fp_a") == (700, 700)
    # Reserved with tokens only (no USD budget then): the cost is charged as if unreserved.
    assert (await store.reserve("res2", "team-a", 100, TokenLimits(per_day=1000), T0)).ok
    await store.bind("res2", run("run_2", T0, key="fp_a"))
    assert await store.settle("run_2", "team-a", "gpt-4o", Usage(10, 10, 20), T0, cost=300)
    assert await store.usd_spent("team-a", T0) == (1000, 1000)
    # Settled without usage (abandoned): the worst case stays charged, the ledger gets no cost.
    assert (await store.reserve("res3", "team-a", 0, NO_TOKENS, T0, spend(DOLLAR, day=5 * DOLLAR))).ok
    await store.bind("res3", run("run_3", T0, key="fp_a"))
    assert await store.settle("run_3", "team-a", "unknown", None, T0)
    assert await store.usd_spent("team-a", T0) == (1000 + DOLLAR, 1000 + DOLLAR)
    rows = {(row.model, row.runs, row.cost_micros) for row in await store.usage("team-a", "2026-03-10")}
    assert rows == {("gpt-4o", 2, 1000), ("unknown", 1, 0)}


async def test_cancel_gives_the_dollars_back(replicas: Replicas) -> None:
    a, b = await replicas(2)
    assert (await a.reserve("res1", "team-a", 10, NO_TOKENS, T0, spend(DOLLAR, day=DOLLAR, key_day=DOLLAR))).ok
    await b.cancel("team-a", "res1")
    assert await a.usd_spent("team-a", T0) == (0, 0)
    assert await a.usd_spent("team-a", T0, key="fp_a") == (0, 0)
    assert (await a.reserve("res2", "team-a", 10, NO_TOKENS, T0, spend(DOLLAR, day=DOLLAR, key_day=DOLLAR))).ok


async def test_due_runs_remember_their_key(replicas: Replicas) -> None:
    store = await one(replicas)
    await store.bind("none", run("run_1", T0, key="fp_a"))
    assert [(r.run_id, r.key) for r in await store.due_runs(T0 + 1, 10)] == [("run_1", "fp_a")]
