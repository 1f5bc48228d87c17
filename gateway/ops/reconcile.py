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

from gateway.domain import BudgetReading, RunSettled, SettledRun, UsdLimits, ending_runs, json_object, settled_runs
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
            if await state.settle(run.run_id, run.tenant, "unknown", None, now, key=run.key):
                settled += 1
                app[RECORDER].run_settled(RunSettled(run.tenant, "unknown", "unknown", None))
            if counts_runs:
                await state.release_run(run.tenant, run.run_id)
            log.warning("run_abandoned", run_id=run.run_id, tenant=run.tenant)
            continue
        found = await _poll(app[SESSION], runtime, state, run, now, counts_runs)
        if found is not None:
            settled += 1
            ended, cost = found
            app[RECORDER].run_settled(RunSettled(run.tenant, ended.model, ended.status, ended.usage, cost, ended.reason))
    return settled


async def _poll(
    session: aiohttp.ClientSession, runtime: Runtime, state: StateStore, run: PendingRun, now: float, counts_runs: bool
) -> tuple[SettledRun, int | None] | None:
    """Ask the upstream how the run stands: settle it once it has ended with its usage (the run and its
    cost, if this settled it); free its concurrency slots (with `counts_runs`) once it has ended, usage or not."""
    authorization = runtime.authenticator.upstream_authorization(run.tenant)
    if authorization is None:  # caller-credential mode: only the abandon rule can settle it
        await state.touch(run.tenant, run.run_id, now)
        return None
    path = f"/threads/{quote(run.thread_id, safe='')}/runs/{quote(run.run_id, safe='')}"
    try:
        status, body, _ = await runtime.upstream.fetch(session, path, authorization, state=state, tenant=run.tenant)
    except GatewayError:
        await state.touch(run.tenant, run.run_id, now)
        return None
    data = json_object(body) if status == 200 else {}
    if counts_runs and next(ending_runs(data), None) is not None:
        await state.release_run(run.tenant, run.run_id)
    settled = next(settled_runs(data), None)
    if settled is not None:
        cost = runtime.pricing.cost(settled.model, settled.usage)
        done = await state.settle(run.run_id, run.tenant, settled.model, settled.usage, now, key=run.key, cost=cost or 0)
        return (settled, cost) if done else None
    await state.touch(run.tenant, run.run_id, now)
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
    """Tell the observers every budgeted tenant's budgets (tokens, USD), as the shared ledger stands."""
    now = time.time() if now is None else now
    runtime = app[RUNTIME].current
    for tenant in runtime.labels.tenants:
        tenant_limits = runtime.config.limits.for_tenant(tenant)
        if tenant_limits.usd:
            await _publish_usd(app, tenant, tenant_limits.usd, now)
        limits = tenant_limits.tokens
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


async def _publish_usd(app: web.Application, tenant: str, limits: UsdLimits, now: float) -> None:
    spent = dict(zip(("day", "month"), await app[STATE].usd_spent(tenant, now), strict=True))
    configured = {period: limit for period, limit in (("day", limits.per_day), ("month", limits.per_month)) if limit}
    remaining = {period: max(0, limit - spent[period]) for period, limit in configured.items()}
    app[RECORDER].budget_read(BudgetReading(tenant, configured, remaining, unit="usd"))


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
