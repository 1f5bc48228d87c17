"""The reconciler: runs created through the gateway whose usage nobody saw (the client went away,
never polled, the stream was cut) are polled upstream until they end, then settled.

A background task per replica; the work list lives in the shared state, so any replica can finish
a run another one started. A run that stays unknown past `limits.abandon_after_s` (say, a tenant in
caller-credential mode, whose key the gateway never keeps) is charged its whole reservation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict

from .context import RUNTIME, SESSION, STATE
from .errors import GatewayError
from .runs import TERMINAL_STATUSES, Usage
from .runtime import Runtime
from .state import PendingRun, StateStore, StateUnavailable
from .telemetry.metrics import METRICS

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
        if now - run.created_at > limits.abandon_after_s:
            settled += await state.settle(run.run_id, run.tenant, "unknown", None, now)
            log.warning("run_abandoned", run_id=run.run_id, tenant=run.tenant)
            continue
        settled += await _poll(app[SESSION], runtime, state, run, now)
    return settled


async def _poll(session: aiohttp.ClientSession, runtime: Runtime, state: StateStore, run: PendingRun, now: float) -> bool:
    authorization = runtime.authenticator.upstream_authorization(run.tenant)
    if authorization is None:  # caller-credential mode: only the abandon rule can settle it
        await state.touch(run.run_id, now)
        return False
    upstream = runtime.upstream
    url = upstream.url(f"/threads/{quote(run.thread_id, safe='')}/runs/{quote(run.run_id, safe='')}")
    headers = CIMultiDict({"Authorization": authorization, "OpenAI-Beta": "assistants=v2"})
    try:
        response = await upstream.send(session, "GET", url, headers)
        async with response:
            body = await response.read()
    except (GatewayError, aiohttp.ClientError, TimeoutError):
        await state.touch(run.run_id, now)
        return False
    polled = _json(body) if response.status == 200 else {}
    usage = Usage.from_json(polled.get("usage"))
    if polled.get("status") in TERMINAL_STATUSES and usage is not None:
        return await state.settle(run.run_id, run.tenant, str(polled.get("model") or "unknown"), usage, now)
    await state.touch(run.run_id, now)
    return False


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
    """Budget gauges for every tenant with token limits, read from the shared ledger."""
    now = time.time() if now is None else now
    runtime, metrics = app[RUNTIME].current, app[METRICS]
    for tenant in runtime.labels.tenants:
        limits = runtime.config.limits.for_tenant(tenant).tokens
        if not limits:
            continue
        for period, limit in (("minute", limits.per_minute), ("day", limits.per_day), ("month", limits.per_month)):
            if limit is not None:
                metrics.budget_limit.labels(tenant, period).set(limit)
        for name, remaining in (await app[STATE].tokens_remaining(tenant, limits, now)).items():
            metrics.budget_remaining.labels(tenant, _PERIODS.get(name, name)).set(remaining)


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


def _json(body: bytes) -> dict[str, object]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
