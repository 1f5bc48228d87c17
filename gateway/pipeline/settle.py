"""The settle stage: turn what a run really used into the ledger, exactly once per run id.

A run's reservation is bound to its run id as soon as the stream or response names it (so the
reconciler can finish the job if the client walks away or this replica dies); its usage is
settled from whichever shows it first — the terminal stream event, a polled run object, a run list —
and a call that never created a run gives its reservation back. Polls and lists also free the
concurrency slots of the runs they show ended (a call's own run frees its slot in `admit`).
"""

from __future__ import annotations

import time

import structlog

from gateway.config.pricing import Pricing
from gateway.domain import (
    TERMINAL_STATUSES,
    Recorder,
    RunRecord,
    RunSettled,
    ending_runs,
    json_object,
    settled_runs,
)
from gateway.ids import token
from gateway.state import PendingRun, StateStore, StateUnavailable

log = structlog.get_logger("gateway.settle")


class Settlement:
    """One run call's link to the shared state: ownership claims, the reservation, the settlement."""

    def __init__(
        self, state: StateStore, recorder: Recorder, tenant: str, key: str, *, creates_run: bool, creates_thread: bool = False
    ) -> None:
        self._state = state
        self._recorder = recorder
        self._tenant = tenant
        self._key = key  # the caller's key fingerprint: the run's ledger row and USD budget
        self._creates_run = creates_run  # submit_tool_outputs continues a run its create call bound
        # Only a call that made the thread claims it: a run on a thread nobody claimed (made behind the
        # gateway's back, or forgotten) must not move it to the caller.
        self._creates_thread = creates_thread
        # Bound to the run even when no tokens were reserved under it: binding is what puts the run
        # on the reconciler's list, so its usage is counted however the client ran it.
        self.reservation = token()
        self._bound = False
        self._claimed: tuple[str | None, str | None] = (None, None)

    async def on_ids(self, thread_id: str | None, run_id: str | None) -> None:
        """Claim what the call made, and bind its run to the reservation, in one step of the state."""
        binding = None
        if self._creates_run and run_id is not None and thread_id is not None and not self._bound:
            now = time.time()
            binding = (self.reservation, PendingRun(run_id, thread_id, self._tenant, now, now, self._key))
        try:
            if (thread_id, run_id) != self._claimed or binding is not None:  # `close` asks again: once is enough
                await self._state.claim(self._tenant, thread_id if self._creates_thread else None, run_id, binding)
                self._claimed = (thread_id, run_id)
                self._bound = self._bound or binding is not None
        except StateUnavailable:
            log.warning("state_unavailable", step="claim", run_id=run_id)

    async def close(self, record: RunRecord) -> None:
        """After the relay: settle a finished run (at the cost the tracker priced it), or give back a
        reservation no run took.

        A client that vanished right after the run was named may have cancelled the bind: it is
        made here, so the reconciler still finds the run.
        """
        await self.on_ids(record.thread_id, record.run_id)
        try:
            if record.run_id is not None and record.status in TERMINAL_STATUSES and record.usage is not None:
                model, cost = record.model or "unknown", record.cost_micros
                now = time.time()
                if await self._state.settle(
                    record.run_id, self._tenant, model, record.usage, now, key=self._key, cost=cost or 0
                ):
                    reason = record.last_error_code or record.incomplete_reason
                    self._recorder.run_settled(RunSettled(self._tenant, model, record.status, record.usage, cost, reason))
            elif self._creates_run and not self._bound:
                await self._state.cancel(self._tenant, self.reservation)
        except StateUnavailable:
            log.warning("state_unavailable", step="settle", run_id=record.run_id)


async def settle_polled(
    state: StateStore, recorder: Recorder, pricing: Pricing, tenant: str, key: str, counts_runs: bool, body: bytes
) -> None:
    """A polled (or cancelled) run, or a page of them: settle every terminal run that carries its usage
    (`key`, the poller's, is its ledger's key if the run was not bound with its own); with `counts_runs`
    (the tenant's runs hold concurrency slots), every run that has ended gives its back."""
    data = json_object(body)
    for run in settled_runs(data):
        cost = pricing.cost(run.model, run.usage)
        try:
            if await state.settle(run.run_id, tenant, run.model, run.usage, time.time(), key=key, cost=cost or 0):
                recorder.run_settled(RunSettled(tenant, run.model, run.status, run.usage, cost, run.reason))
        except StateUnavailable:
            log.warning("state_unavailable", step="settle_polled", run_id=run.run_id)
    for run_id in ending_runs(data) if counts_runs else ():
        try:
            await state.release_run(tenant, run_id)
        except StateUnavailable:
            log.warning("state_unavailable", step="release_run", run_id=run_id)  # it expires (run_lease_ttl_s)
