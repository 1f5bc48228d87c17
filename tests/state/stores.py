"""What the StateStore contract tests share: the clock they start at, and runs to bind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from gateway.state import PendingRun, StateStore

Replicas = Callable[[int], Awaitable[list[StateStore]]]

# 2026-03-10 12:00:30 UTC: 30 s left in the minute, 12 h in the day, 22 days in the month.
T0 = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC).timestamp()


async def one(replicas: Replicas) -> StateStore:
    return (await replicas(1))[0]


def run(run_id: str, at: float, tenant: str = "team-a", key: str = "-") -> PendingRun:
    return PendingRun(run_id, f"thread_{run_id}", tenant, at, at, key)
