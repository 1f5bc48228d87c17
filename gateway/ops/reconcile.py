"""The reconciler: runs created through the gateway whose usage nobody saw (the client went away,
never polled, the stream was cut) are polled upstream until they end, then settled.

A background task per replica; the work list lives in the shared state, so any replica can finish
a run another one started. A run that stays unknown past `limits.abandon_after_s` (say, a tenant in
caller-credential mode, whose key the gateway never keeps) is charged its whole reservation. A run
seen ended (or abandoned) gives its concurrency slots back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web

from gateway.domain import BudgetReading, SettledRun, ending_runs, json_object, settled_runs
from gateway.errors import GatewayError
from gateway.keys import RECORDER, RUNTIME, SESSION, STATE
from gateway.runtime import Runtime
from gateway.state import PendingRun, StateStore, StateUnavailable

log = structlog.get_logger("gateway.reconcile")
BATCH = 100
_PERIODS = {"tokens_per_minute": "minute", "tokens_per_day": "day", "tokens_per_month": "month"}


async def reconcile_once(app: web.Application, now: float | None = None) -> int:
    """One pass over the due runs; returns how many were settled."""
    now = time.time() if now is None else now
    runtime, state = app[RUNTIME].current, app[STATE]
    limits = runtime.config.limits
    settled = 0
    for run in await state.due_runs(now - limits.reconcile_after_s, BATCH):
        counts_runs = limits.for_tenant(run.tenant).counts_runs
        if now - run.created_at > limits.abandon_after_s:
            if await state.settle(run.run_id, run.tenant, "unknown", None, now):
                settled += 1
                app[RECORDER].run_settled(run.tenant, "unknown", "unknown", None)
            if counts_runs:
                await state.release_run(run.run_id)
            log.warning("run_abandoned", run_id=run.run_id, tenant=run.tenant)
            continue
        found = await _poll(app[SESSION], runtime, state, run, now, counts_runs)
        if found is not None:
            settled += 1
            app[RECORDER].run_settled(run.tenant, found.model, found.status, found.usage)
    return settled


async def _poll(
    session: aiohttp.ClientSession, runtime: Runtime, state: StateStore, run: PendingRun, now: float, counts_runs: bool
) -> SettledRun | None:
    """Ask the upstream how the run stands: settle it once it has ended with its usage (the run, if
    this settled it); free its concurrency slots (with `counts_runs`) once it has ended, usage or not."""
    authorization = runtime.authenticator.upstream_authorization(run.tenant)
    if authorization is None:  # caller-credential mode: only the abandon rule can settle it
        await state.touch(run.run_id, now)
        return None
    path = f"/threads/{quote(run.thread_id, safe='')}/runs/{quote(run.run_id, safe='')}"
    try:
        status, body, _ = await runtime.upstream.fetch(session, path, authorization, state=state, tenant=run.tenant)
    except GatewayError:
        await state.touch(run.run_id, now)
        return None
    data = json_object(body) if status == 200 else {}
    if counts_runs and next(ending_runs(data), None) is not None:
        await state.release_run(run.run_id)
    settled = next(settled_runs(data), None)
    if settled is not None:
        return settled if await state.settle(run.run_id, run.tenant, settled.model, settled.usage, now) else None
    await state.touch(run.run_id, now)
    return None


async def reconciler(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the background loop, stopped cleanly with the app."""
    stop = asyncio.Event()
    task = asyncio.create_task(_loop(app, stop))
    yield
    # Cancelling alone is not enough: redis-py can swallow a cancellation that lands mid-command,
    # and the loop would then run on, holding the shutdown forever. `stop` ends it at the next turn.
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def publish_budgets(app: web.Application, now: float | None = None) -> None:
    """Tell the observers every token-limited tenant's budgets, as the shared ledger stands."""
    now = time.time() if now is None else now
    runtime = app[RUNTIME].current
    for tenant in runtime.labels.tenants:
        limits = runtime.config.limits.for_tenant(tenant).tokens
        if not limits:
            continue
        per_period = {"minute": limits.per_minute, "day": limits.per_day, "month": limits.per_month}
        remaining = await app[STATE].tokens_remaining(tenant, limits, now)
        app[RECORDER].budget_read(
            BudgetReading(
                tenant,
                {period: limit for period, limit in per_period.items() if limit is not None},
                {_PERIODS.get(name, name): left for name, left in remaining.items()},
            )
        )


async def _loop(app: web.Application, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await publish_budgets(app)
            await reconcile_once(app)
        except StateUnavailable:
            log.warning("state_unavailable", step="reconcile")
        except Exception:  # the loop must outlive any one bad pass
            log.exception("reconcile_failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), app[RUNTIME].current.config.limits.reconcile_interval_s)

