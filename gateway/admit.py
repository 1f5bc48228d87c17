"""The admission stage: requests per minute, concurrent runs and streams, token reservation.

Runs after the policy (so the reservation is the policy's effective caps) and before forwarding.
A refusal is OpenAI's own 429 — `retry-after`, `retry-after-ms` and the `x-ratelimit-*` headers —
so the SDK's retry logic works unchanged; the same headers ride on every admitted run call's
response. Leases are given back when the call ends; the token reservation lives on with the run
until its usage is captured (stream end, a poll, or the reconciler) and settled exactly once.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web

from .context import CALLER, REQUEST_RUNTIME, STATE
from .ids import token
from .errors import RateLimited, StateDown
from .limits_config import TenantLimits
from .openai_types import RunRoute
from .runs import RunRecord
from .state import (
    CONCURRENT_RUNS,
    OPEN_STREAMS,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_MINUTE,
    StateStore,
    StateUnavailable,
    Verdict,
    Window,
)
from .telemetry.metrics import METRICS


@dataclass(slots=True)
class Ticket:
    """What one admitted call holds: leases to give back, and the windows to report."""

    leases: list[tuple[str, str]] = field(default_factory=list)
    requests: Window | None = None
    tokens: Window | None = None

    def headers(self) -> dict[str, str]:
        return _window_headers(self.requests, self.tokens)


@asynccontextmanager
async def admission(
    request: web.Request, route: RunRoute, record: RunRecord, stream: bool, reservation: str
) -> AsyncIterator[Ticket]:
    """Admit the call or raise 429 (503 if the state backend is down and fail_closed).

    Tokens are reserved under `reservation`; the settle stage binds it to the run and settles it.
    """
    state = request.app[STATE]
    limits = request[REQUEST_RUNTIME].config.limits.for_tenant(record.tenant)
    ticket = Ticket()
    try:
        try:
            await _admit(state, limits, request, route, record, stream, reservation, ticket)
        except StateUnavailable:
            raise StateDown("The gateway's shared state is unreachable; try again shortly.") from None
        yield ticket
    finally:
        await _give_back(state, ticket)


async def _admit(
    state: StateStore,
    limits: TenantLimits,
    request: web.Request,
    route: RunRoute,
    record: RunRecord,
    stream: bool,
    reservation: str,
    ticket: Ticket,
) -> None:
    tenant, key = record.tenant, request[CALLER].fingerprint or "-"
    per_key = limits.per_key
    rates = [(f"rpm:{tenant}", limits.requests_per_minute)]
    leases = [(f"runs:{tenant}", CONCURRENT_RUNS, limits.concurrent_runs)]
    if per_key is not None:
        rates.append((f"rpm:{tenant}:{key}", per_key.requests_per_minute))
        leases.append((f"runs:{tenant}:{key}", CONCURRENT_RUNS, per_key.concurrent_runs))
    if stream:
        leases.append((f"streams:{tenant}", OPEN_STREAMS, limits.open_streams))
    refuse = partial(_refuse_unless, request=request, record=record, ticket=ticket)
    for bucket, per_minute in rates:
        if per_minute is not None:
            verdict = await state.hit_requests(bucket, per_minute)
            ticket.requests = _tightest(ticket.requests, verdict.window)
            refuse(verdict, REQUESTS_PER_MINUTE)
    ttl = request[REQUEST_RUNTIME].config.limits.lease_ttl_s
    for bucket, name, limit in leases:
        if limit is not None:
            lease = token()
            refuse(await state.acquire(bucket, lease, limit, ttl), name)
            ticket.leases.append((bucket, lease))
    if limits.tokens and route is not RunRoute.SUBMIT_TOOL_OUTPUTS:  # one reservation covers a run's tool rounds
        amount = (record.max_prompt_tokens or 0) + (record.max_completion_tokens or 0)
        verdict = await state.reserve(reservation, tenant, amount, limits.tokens, time.time())
        ticket.tokens = verdict.window
        refuse(verdict, verdict.refused_by or TOKENS_PER_MINUTE)


def _refuse_unless(verdict: Verdict, limit: str, *, request: web.Request, record: RunRecord, ticket: Ticket) -> None:
    if verdict.ok:
        return
    request.app[METRICS].rate_limit_hits.labels(request[REQUEST_RUNTIME].labels.tenant(record.tenant), limit).inc()
    retry = max(verdict.retry_after_s, 0.001)
    headers = {**ticket.headers(), "retry-after": str(math.ceil(retry)), "retry-after-ms": str(math.ceil(retry * 1000))}
    kind = "tokens" if limit.startswith("tokens") else "requests"
    raise RateLimited(
        f"Rate limit reached for tenant {record.tenant} on {limit.replace('_', ' ')}"
        f"{_usage_note(verdict.window)}. Please try again in {_duration(retry)}.",
        kind=kind,
        headers=headers,
    )


async def _give_back(state: StateStore, ticket: Ticket) -> None:
    for bucket, lease in ticket.leases:
        try:
            await state.release(bucket, lease)
        except StateUnavailable:
            pass  # the lease expires by itself (lease_ttl_s)


def _tightest(current: Window | None, new: Window | None) -> Window | None:
    if current is None or (new is not None and new.remaining < current.remaining):
        return new
    return current


def _usage_note(window: Window | None) -> str:
    return "" if window is None else f": limit {window.limit}, remaining {window.remaining}"


def _window_headers(requests: Window | None, tokens: Window | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, window in (("requests", requests), ("tokens", tokens)):
        if window is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(window.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(window.remaining, 0))
            headers[f"x-ratelimit-reset-{kind}"] = _duration(window.reset_s)
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's format for resets: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
