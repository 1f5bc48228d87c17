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

from gateway.config.limits import TenantLimits
from gateway.errors import RateLimited
from gateway.ids import token
from gateway.keys import AUDIT_ROOM
from gateway.pipeline.call import RunCall
from gateway.schema.requests import RunRoute
from gateway.state import (
    CONCURRENT_RUNS,
    OPEN_STREAMS,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_MINUTE,
    StateStore,
    StateUnavailable,
    Verdict,
    Window,
)


@dataclass(slots=True)
class Ticket:
    """What one admitted call holds: leases to give back, and the windows to report."""

    leases: list[tuple[str, str]] = field(default_factory=list)
    requests: Window | None = None
    tokens: Window | None = None

    def headers(self) -> dict[str, str]:
        return _window_headers(self.requests, self.tokens)


async def audit_room(call: RunCall) -> None:
    """Wait for room in the audit log for the call's two records (while its sink is behind)."""
    room = call.request.app.get(AUDIT_ROOM)
    if room is not None:
        await room.acquire()  # given back by the audit writer once the outcome record is written


@asynccontextmanager
async def admission(call: RunCall) -> AsyncIterator[None]:
    """Admit the call or raise 429 (503 if the state backend is down and fail_closed).

    Tokens are reserved under the settlement's reservation, which the settle stage binds to the run
    and settles; leases are given back when the call ends. The windows ride on the response.
    """
    ticket = Ticket()
    try:
        await _admit(call, call.runtime.config.limits.for_tenant(call.tenant), ticket)
        call.headers.update(ticket.headers())
        call.tracker.on_forward()
        yield
    finally:
        await _give_back(call.state, ticket)


async def _admit(call: RunCall, limits: TenantLimits, ticket: Ticket) -> None:
    state, tenant, key = call.state, call.tenant, call.caller.fingerprint or "-"
    per_key = limits.per_key
    rates = [(f"rpm:{tenant}", limits.requests_per_minute)]
    leases = [(f"runs:{tenant}", CONCURRENT_RUNS, limits.concurrent_runs)]
    if per_key is not None:
        rates.append((f"rpm:{tenant}:{key}", per_key.requests_per_minute))
        leases.append((f"runs:{tenant}:{key}", CONCURRENT_RUNS, per_key.concurrent_runs))
    if call.data.get("stream") is True:
        leases.append((f"streams:{tenant}", OPEN_STREAMS, limits.open_streams))
    refuse = partial(_refuse_unless, call=call, ticket=ticket)
    for bucket, per_minute in rates:
        if per_minute is not None:
            verdict = await state.hit_requests(bucket, per_minute)
            ticket.requests = _tightest(ticket.requests, verdict.window)
            refuse(verdict, REQUESTS_PER_MINUTE)
    ttl = call.runtime.config.limits.lease_ttl_s
    for bucket, name, limit in leases:
        if limit is not None:
            lease = token()
            refuse(await state.acquire(bucket, lease, limit, ttl), name)
            ticket.leases.append((bucket, lease))
    if limits.tokens and call.route is not RunRoute.SUBMIT_TOOL_OUTPUTS:  # one reservation covers a run's tool rounds
        reservation = call.settlement.reservation
        verdict = await state.reserve(reservation, tenant, call.reserve_tokens, limits.tokens, time.time())
        ticket.tokens = verdict.window
        refuse(verdict, verdict.refused_by or TOKENS_PER_MINUTE)


def _refuse_unless(verdict: Verdict, limit: str, *, call: RunCall, ticket: Ticket) -> None:
    if verdict.ok:
        return
    call.record.refused_by = limit  # observers count the refusal from the record
    retry = max(verdict.retry_after_s, 0.001)
    headers = {**ticket.headers(), "retry-after": str(math.ceil(retry)), "retry-after-ms": str(math.ceil(retry * 1000))}
    kind = "tokens" if limit.startswith("tokens") else "requests"
    raise RateLimited(
        f"Rate limit reached for tenant {call.tenant} on {limit.replace('_', ' ')}"
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
