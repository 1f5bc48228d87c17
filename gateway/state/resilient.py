"""A `StateStore` that survives its backend: Redis first, a local `MemoryState` when Redis is down.

Every call goes to the primary. When it raises `StateUnavailable` (or anything else: a bug must not
take admission down), the store is *down*: `fail_open` answers from the fallback (the replica admits
and counts locally), `fail_closed` raises `StateUnavailable` (the gateway answers 503). While down
the primary is tried again at most every `retry_interval_s` (one caller probes, the others go
straight to the fallback or fail at once), so a dead Redis costs one timeout per interval, not one
per request; the first call that succeeds ends the episode. Each episode is logged once when it
starts and once when it ends, and reported through `on_outage("down" | "up")`.

What was taken locally is given back locally: a lease or a reservation the fallback granted is
released / cancelled there even after Redis is back, and a run that took over local leases holds
(and releases) them there. A run bound while Redis was down is listed in
the fallback; once Redis answers, its settle is recorded in Redis (the shared ledger, exactly once
across replicas) and in the fallback (freeing its local reservation), and `due_runs` lists the
fallback's runs next to Redis's. Threads claimed while Redis was down stay visible to this replica
(`owners` asks the fallback when Redis knows no owner). In `fail_open`, the facade's records (assistants,
runs) are written through to the fallback too, so this replica still reads its own through an outage.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import structlog
from cachetools import TTLCache

from gateway.domain import TokenLimits, Usage
from gateway.state import (
    FORGOTTEN,
    NO_KEY,
    Admission,
    Admitted,
    Binding,
    CallEnd,
    PendingRun,
    Shortcuts,
    StateStore,
    StateUnavailable,
    UsageRow,
)
from gateway.state.semantics import PENDING_TTL_S

T = TypeVar("T")
log = structlog.get_logger("gateway.state")

_LOCAL_MAX = 100_000  # leases / reservations / runs the fallback holds for us, at most


class ResilientState(Shortcuts):
    def __init__(
        self,
        primary: StateStore,
        fallback: StateStore,
        mode: Literal["fail_open", "fail_closed"],
        on_outage: Callable[[str], None] | None = None,
        *,
        retry_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,  # tests step it instead of sleeping
    ) -> None:
        self._clock = clock
        self._primary = primary
        self._fallback = fallback
        self._mode = mode
        self._on_outage = on_outage
        self._retry_interval_s = retry_interval_s
        self._down_since: float | None = None  # monotonic; None while the primary answers
        self._next_try = 0.0
        self._local_leases: TTLCache[tuple[str, str], bool] = TTLCache(_LOCAL_MAX, PENDING_TTL_S)
        self._local_reservations: TTLCache[str, bool] = TTLCache(_LOCAL_MAX, PENDING_TTL_S)
        self._local_runs: TTLCache[str, bool] = TTLCache(_LOCAL_MAX, PENDING_TTL_S)
        self._local_run_slots: TTLCache[str, bool] = TTLCache(_LOCAL_MAX, PENDING_TTL_S)

    @property
    def down(self) -> bool:
        return self._down_since is not None

    async def probe(self) -> None:
        """In `fail_closed`, raise `StateUnavailable` unless the primary answers now (one round trip):
        for calls whose effect must be recorded there, checked before they are made."""
        if self._mode == "fail_closed":
            await self._call(lambda s: s.get_record("probe", "writable"))

    async def available(self) -> bool:
        """Whether calls are answered now. Always in `fail_open`; in `fail_closed`, while the primary is
        down it is tried again (at most every retry interval), so a replica taken out of rotation for
        it notices its return without traffic."""
        if not self.down:
            return True
        try:
            await self.probe()
        except StateUnavailable:
            return False
        return True

    # The machinery.
    async def _call(self, op: Callable[[StateStore], Awaitable[T]]) -> tuple[T, bool]:
        """(result, whether the primary answered)."""
        if self._try_primary():
            try:
                result = await op(self._primary)
            except StateUnavailable as exc:
                self._went_down(exc)
            except Exception as exc:  # anything from the primary counts as an outage
                log.exception("state_backend_error")
                self._went_down(exc)
            else:
                self._came_up()
                return result, True
        if self._mode == "fail_closed":
            raise StateUnavailable("the shared state backend is unavailable")
        return await self._local(op), False

    async def _local(self, op: Callable[[StateStore], Awaitable[T]]) -> T:
        try:
            return await op(self._fallback)
        except StateUnavailable:
            raise
        except Exception as exc:  # callers only ever handle StateUnavailable
            log.exception("state_fallback_error")
            raise StateUnavailable(f"local state failed: {exc!r}") from exc

    def _try_primary(self) -> bool:
        if self._down_since is None:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        self._next_try = now + self._retry_interval_s  # this caller probes; the others do not wait on it
        return True

    def _went_down(self, exc: BaseException) -> None:
        now = self._clock()
        self._next_try = now + self._retry_interval_s
        if self._down_since is not None:
            return
        self._down_since = now
        log.warning(
            "state_backend_down",
            error=str(exc) or type(exc).__name__,
            on_failure=self._mode,
            action="admitting and counting locally" if self._mode == "fail_open" else "refusing with 503",
        )
        self._report("down")

    def _came_up(self) -> None:
        if self._down_since is None:
            return
        down_for = self._clock() - self._down_since
        self._down_since = None
        log.info("state_backend_up", down_for_s=round(down_for, 3))
        self._report("up")

    def _report(self, status: str) -> None:
        if self._on_outage is not None:
            try:
                self._on_outage(status)
            except Exception:  # a metric callback must not break admission
                log.exception("state_outage_callback_failed")

    # Ownership.
    async def owners(self, object_ids: Sequence[str]) -> list[str | None]:
        found, primary = await self._call(lambda s: s.owners(object_ids))
        if primary and any(owner in (None, FORGOTTEN) for owner in found):  # claimed here while Redis was down?
            local = await self._local(lambda s: s.owners(object_ids))
            return [_either(owner, fallback) for owner, fallback in zip(found, local, strict=True)]
        return found

    async def claim(
        self, tenant: str, object_id: str | None, run_id: str | None = None, bind: Binding | None = None
    ) -> None:
        _, primary = await self._call(lambda s: s.claim(tenant, object_id, run_id, bind))
        if bind is not None:
            await self._after_bind(*bind, primary)

    # Admission: what was taken while the primary was down is given back where it was taken.
    async def admit(self, admission: Admission) -> Admitted:
        admitted, primary = await self._call(lambda s: s.admit(admission))
        if admitted.verdict.ok and not primary:
            for bucket, _ in admission.leases:
                self._local_leases[(bucket, admission.lease)] = True
            if admission.reservation is not None:
                self._local_reservations[admission.reservation.reservation] = True
        return admitted

    async def release(self, tenant: str, key: str, lease: str) -> None:
        if self._local_leases.pop((key, lease), None):
            await self._local(lambda s: s.release(tenant, key, lease))
        else:
            await self._call(lambda s: s.release(tenant, key, lease))

    async def hold_for_run(self, tenant: str, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None:
        if [key for key in keys if self._local_leases.pop((key, lease), None)]:  # the call's slots are local
            await self._local(lambda s: s.hold_for_run(tenant, run_id, keys, lease, ttl_s))
            self._local_run_slots[run_id] = True
            return
        _, primary = await self._call(lambda s: s.hold_for_run(tenant, run_id, keys, lease, ttl_s))
        if not primary:
            self._local_run_slots[run_id] = True

    async def end_call(self, end: CallEnd) -> None:
        """One step where the primary holds everything; step by step where something was taken locally."""
        local_leases = any((bucket, end.lease) in self._local_leases for bucket in end.leases)
        if local_leases or (end.run_id is not None and end.run_id in self._local_run_slots):
            await super().end_call(end)
            return
        _, primary = await self._call(lambda s: s.end_call(end))
        if not primary and end.run_id is not None and end.run_slots and not end.run_ended:
            self._local_run_slots[end.run_id] = True

    async def release_run(self, tenant: str, run_id: str) -> None:
        if self._local_run_slots.pop(run_id, None):
            await self._local(lambda s: s.release_run(tenant, run_id))
        await self._call(lambda s: s.release_run(tenant, run_id))  # marks it released there too, so it is not held again

    # Tokens.
    async def bind(self, reservation: str, run: PendingRun) -> None:
        _, primary = await self._call(lambda s: s.bind(reservation, run))
        await self._after_bind(reservation, run, primary)

    async def _after_bind(self, reservation: str, run: PendingRun, primary: bool) -> None:
        """Where the bound run and its reservation live now, for its settle and a give-back."""
        local_reservation = self._local_reservations.pop(reservation, None)
        if not primary:
            self._local_runs[run.run_id] = True
            if local_reservation:
                self._local_reservations[reservation] = True  # still held locally, by the local run
        elif local_reservation:
            # Redis now lists the run (without a reservation: it will charge the real usage there).
            await self._local(lambda s: s.cancel(run.tenant, reservation))

    async def settle(
        self, run_id: str, tenant: str, model: str, usage: Usage | None, now: float, *, key: str = NO_KEY, cost: int = 0
    ) -> bool:
        settled, primary = await self._call(lambda s: s.settle(run_id, tenant, model, usage, now, key=key, cost=cost))
        if self._local_runs.pop(run_id, None) and primary:
            await self._local(lambda s: s.settle(run_id, tenant, model, usage, now, key=key, cost=cost))
        return settled

    async def cancel(self, tenant: str, reservation: str) -> None:
        if self._local_reservations.pop(reservation, None):
            await self._local(lambda s: s.cancel(tenant, reservation))
        else:
            await self._call(lambda s: s.cancel(tenant, reservation))

    async def tokens_remaining(self, tenant: str, limits: TokenLimits, now: float) -> dict[str, int]:
        remaining, _ = await self._call(lambda s: s.tokens_remaining(tenant, limits, now))
        return remaining

    async def usd_spent(self, tenant: str, now: float, key: str | None = None) -> tuple[int, int]:
        spent, _ = await self._call(lambda s: s.usd_spent(tenant, now, key))
        return spent

    # The reconciler's list.
    async def due_runs(self, before: float, limit: int) -> list[PendingRun]:
        runs, primary = await self._call(lambda s: s.due_runs(before, limit))
        if primary and self._local_runs:
            local = await self._local(lambda s: s.due_runs(before, limit))
            seen = {run.run_id for run in runs}
            runs = sorted([*runs, *(run for run in local if run.run_id not in seen)], key=lambda r: r.checked_at)
            runs = runs[:limit]
        return runs

    async def touch(self, tenant: str, run_id: str, now: float) -> None:
        if run_id in self._local_runs:
            await self._local(lambda s: s.touch(tenant, run_id, now))
        else:
            await self._call(lambda s: s.touch(tenant, run_id, now))

    # The ledger.
    async def usage(self, tenant: str | None, since_day: str) -> list[UsageRow]:
        rows, _ = await self._call(lambda s: s.usage(tenant, since_day))
        return rows

    async def put_record(self, kind: str, object_id: str, data: bytes, ttl_s: float) -> None:
        _, primary = await self._call(lambda s: s.put_record(kind, object_id, data, ttl_s))
        if primary and self._mode == "fail_open":  # readable here through an outage (bounded: the fallback's LRU)
            await self._local(lambda s: s.put_record(kind, object_id, data, ttl_s))

    async def get_record(self, kind: str, object_id: str) -> bytes | None:
        found, primary = await self._call(lambda s: s.get_record(kind, object_id))
        if found is None and primary:  # written locally during an outage
            return await self._local(lambda s: s.get_record(kind, object_id))
        return found

    async def add_to_list(self, kind: str, key: str, member: str, ttl_s: float) -> None:
        _, primary = await self._call(lambda s: s.add_to_list(kind, key, member, ttl_s))
        if primary and self._mode == "fail_open":  # as records: readable here through an outage
            await self._local(lambda s: s.add_to_list(kind, key, member, ttl_s))

    async def remove_from_list(self, kind: str, key: str, member: str) -> None:
        _, primary = await self._call(lambda s: s.remove_from_list(kind, key, member))
        if primary and self._mode == "fail_open":
            await self._local(lambda s: s.remove_from_list(kind, key, member))

    async def list_members(self, kind: str, key: str) -> list[str]:
        found, primary = await self._call(lambda s: s.list_members(kind, key))
        if not found and primary:  # added locally during an outage
            return await self._local(lambda s: s.list_members(kind, key))
        return found

    async def close(self) -> None:
        for store in (self._primary, self._fallback):
            try:
                await store.close()
            except Exception:  # closing is best effort
                log.warning("state_close_failed", exc_info=True)


def _either(owner: str | None, fallback: str | None) -> str | None:
    """Redis's owner, or the one claimed locally during an outage where Redis knows none."""
    return fallback if owner in (None, FORGOTTEN) and fallback not in (None, FORGOTTEN) else owner
