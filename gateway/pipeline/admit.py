"""The admission stage: requests per minute, concurrent runs and streams, the token and USD reservation.

Runs after the policy (so the reservation is the policy's effective caps) and before forwarding;
which checks apply and how a refusal reads are the pure `gateway.limits`. Leases are given back
when the call ends, but for a run's concurrency slot: a call whose run is not finished when it ends
(queued, paused at requires_action, a client gone mid-stream) hands its slot to the run, which holds
it until it is seen finished (this call's end, a poll, a run list, a later call's stream, the
reconciler) or `run_lease_ttl_s`. The token reservation lives on with the run until its usage is
captured (stream end, a poll, or the reconciler) and settled exactly once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from gateway.config.limits import TenantLimits
from gateway.domain import ENDING_STATUSES, UsdLimits
from gateway.errors import AuditDown, InvalidRequest
from gateway.http.finish import to_the_end
from gateway.ids import token
from gateway.keys import AUDIT_ROOM, AUDIT_WRITABLE
from gateway.limits import Ticket, checks_for, refusal
from gateway.pipeline.call import RunCall
from gateway.pipeline.facts import assistant_facts
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest, RunRoute
from gateway.state import (
    CONCURRENT_RUNS,
    NO_KEY,
    OPEN_STREAMS,
    REQUESTS_PER_MINUTE,
    TOKENS_PER_MINUTE,
    Admission,
    CallEnd,
    Reservation,
    Spend,
    StateStore,
    StateUnavailable,
    Verdict,
)


async def audit_room(call: RunCall) -> None:
    """Wait for room in the audit log for the call's two records (while its sink is behind); under
    `audit.on_failure: fail_closed`, refuse the call (503) while the sink cannot write."""
    room, writable = call.request.app.get(AUDIT_ROOM), call.request.app.get(AUDIT_WRITABLE)
    if room is None:
        return
    _refuse_unless_writable(writable)
    await room.acquire()  # given back by the audit writer once the outcome record is written
    try:
        _refuse_unless_writable(writable)  # the sink may have failed while the call waited for room
    except AuditDown:
        room.release()
        raise


def _refuse_unless_writable(writable: Callable[[], bool] | None) -> None:
    if writable is not None and not writable():
        raise AuditDown("The audit log cannot be written, so no run call is made (audit.on_failure: fail_closed).")


@asynccontextmanager
async def admission(call: RunCall) -> AsyncIterator[None]:
    """Admit the call or raise 429 (503 if the state backend is down and fail_closed).

    Tokens are reserved under the settlement's reservation, which the settle stage binds to the run
    and settles; leases are given back when the call ends. The windows ride on the response.
    """
    ticket = Ticket(token())
    try:
        await _admit(call, call.runtime.config.limits.for_tenant(call.tenant), ticket)
        call.headers.update(ticket.headers())
        call.tracker.on_forward()
        yield
    finally:
        await to_the_end(_give_back(call, ticket))  # (the client may have left: the leases come back all the same)


async def _admit(call: RunCall, limits: TenantLimits, ticket: Ticket) -> None:
    """Every check at once (one round trip to Redis), all or nothing: request windows, leases, and the
    run's reservation (one covers a run's tool rounds: none for submit_tool_outputs)."""
    tenant = call.tenant
    creates_run = call.route is not RunRoute.SUBMIT_TOOL_OUTPUTS
    checks = checks_for(limits, tenant, call.caller.fingerprint or NO_KEY, call.data.get("stream") is True, creates_run)
    ticket.run_slots = checks.run_slots
    reservation = None
    if limits.reserves and creates_run:
        spend = await _worst_case_spend(call, limits) if limits.spends_usd else None
        reservation = Reservation(call.settlement.reservation, tenant, call.reserve_tokens, limits.tokens, spend)
    admission = Admission(
        tenant, time.time(), checks.rates, [(bucket, limit) for bucket, _, limit in checks.leases], ticket.lease,
        call.runtime.config.limits.lease_ttl_s, reservation,
    )  # fmt: skip
    admitted = await call.state.admit(admission)
    for window in admitted.requests:
        ticket.saw_requests(window)
    verdict = admitted.verdict
    if reservation is not None and verdict.refused_by not in (REQUESTS_PER_MINUTE, CONCURRENT_RUNS, OPEN_STREAMS):
        ticket.tokens = verdict.window  # the tokens' window (a refused call's too)
    if verdict.ok:
        ticket.leases = [bucket for bucket, _, _ in checks.leases]
    _refuse_unless(call, verdict, verdict.refused_by or TOKENS_PER_MINUTE, ticket)


async def _worst_case_spend(call: RunCall, limits: TenantLimits) -> Spend:
    """What the run may cost at most, priced by the model it will run (the body's, else its assistant's):
    a model with no price cannot be reserved, so the run is refused."""
    model = call.model
    if model is None and isinstance(call.run_request, CreateThreadAndRunRequest | CreateRunRequest):
        model = (await assistant_facts(call, call.run_request.assistant_id)).assistant_model
    price = call.runtime.pricing.price(model)
    if price is None:
        raise InvalidRequest(
            f"The model {model!r} has no price in the gateway's price table, so a run of it cannot be held to "
            f"tenant {call.tenant}'s USD budget. Ask the gateway's operators to price it under `pricing:`.",
            param="model", code="model_not_priced",
        )  # fmt: skip
    key_limits = limits.per_key.usd if limits.per_key is not None else UsdLimits()
    return Spend(price.worst_case(*call.caps), call.caller.fingerprint or NO_KEY, limits.usd, key_limits)


async def count_request(state: StateStore, limits: TenantLimits, tenant: str, key: str) -> None:
    """Requests per minute alone, for a pass-through call that creates an object (a thread, a file, ...):
    creating is bounded like running, reading is not (polling must not eat a tenant's rate)."""
    ticket = Ticket()
    rates = checks_for(limits, tenant, key, stream=False, creates_run=False).rates
    if not rates:
        return
    admitted = await state.admit(Admission(tenant, time.time(), rates))
    for window in admitted.requests:
        ticket.saw_requests(window)
    if not admitted.verdict.ok:
        raise refusal(admitted.verdict, REQUESTS_PER_MINUTE, tenant, ticket)


def _refuse_unless(call: RunCall, verdict: Verdict, limit: str, ticket: Ticket) -> None:
    if not verdict.ok:
        call.record.refused_by = limit  # observers count the refusal from the record
        raise refusal(verdict, limit, call.tenant, ticket)


async def _give_back(call: RunCall, ticket: Ticket) -> None:
    """The call's leases back; the run's slots to the run while it goes on, freed once it has ended."""
    run_id, status = call.record.run_id, call.record.status
    ended = status is not None and status in ENDING_STATUSES
    end = CallEnd(call.tenant, ticket.lease, ticket.leases, run_id if status is not None else None,
                  ticket.run_slots, ended, call.runtime.config.limits.run_lease_ttl_s)  # fmt: skip
    try:
        await call.state.end_call(end)
    except StateUnavailable:
        pass  # the leases expire by themselves (lease_ttl_s, run_lease_ttl_s)
