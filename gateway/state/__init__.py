"""Shared state behind one interface: ownership, request rates, concurrency leases, token
reservations and the usage ledger, and the reconciler's work list.

`memory` (one process, the embedded default) and `redis` (many replicas) implement the same
`StateStore`; every update that must not race is atomic (a Lua script in Redis, no await between
read and write in memory). The admission stage and the usage capture only ever talk to this.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.domain import TokenLimits, Usage, UsdLimits
from gateway.errors import StateDown

REQUESTS_PER_MINUTE = "requests_per_minute"
CONCURRENT_RUNS = "concurrent_runs"
OPEN_STREAMS = "open_streams"
TOKENS_PER_MINUTE = "tokens_per_minute"
TOKENS_PER_DAY = "tokens_per_day"
TOKENS_PER_MONTH = "tokens_per_month"
USD_PER_DAY = "usd_per_day"
USD_PER_MONTH = "usd_per_month"
KEY_USD_PER_DAY = "per_key.usd_per_day"
KEY_USD_PER_MONTH = "per_key.usd_per_month"
NO_KEY = "-"  # the key of a run whose caller presented none (pass-through without a key)


class StateUnavailable(StateDown):
    """The backend did not answer in time or at all (Redis down): the caller applies fail_open/closed.

    It is the client's 503 `state_unavailable` wherever it escapes a handler: the detail (which may
    name the backend's own error) goes to the log, never to the client."""

    def __init__(self, detail: str) -> None:
        super().__init__("The gateway's shared state is unreachable; try again shortly.")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class Window:
    """One limit as the x-ratelimit-* headers report it."""

    limit: int
    remaining: int
    reset_s: float  # seconds until the window frees up again


@dataclass(frozen=True, slots=True)
class Verdict:
    """A limit check: `refused_by` names the limit (one of the constants above) when not ok."""

    ok: bool
    window: Window | None = None
    refused_by: str | None = None
    retry_after_s: float = 0.0
    budget: Window | None = None  # the USD budget that refused (in µUSD); `window` stays the tokens'


@dataclass(frozen=True, slots=True)
class PendingRun:
    """A run created through the gateway whose usage has not been captured yet."""

    run_id: str
    thread_id: str
    tenant: str
    created_at: float  # unix time
    checked_at: float  # unix time of the last reconciler look (created_at before the first)
    key: str = NO_KEY  # the fingerprint of the key that made it: its ledger row and USD budget


@dataclass(frozen=True, slots=True)
class Spend:
    """A run's worst-case cost, reserved against the USD budgets of its tenant and of its key."""

    micros: int  # µUSD
    key: str  # the caller's key fingerprint
    tenant_limits: UsdLimits
    key_limits: UsdLimits


@dataclass(frozen=True, slots=True)
class UsageRow:
    tenant: str
    key: str  # the fingerprint of the key that made the runs
    model: str
    day: str  # YYYY-MM-DD, UTC
    runs: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_micros: int  # µUSD, at the price table in force when each run was settled


@dataclass(frozen=True, slots=True)
class Reservation:
    """A run's worst case, reserved at admission: `tokens` against `limits`, and with `spend` its µUSD."""

    reservation: str
    tenant: str
    tokens: int
    limits: TokenLimits
    spend: Spend | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """Every check of one call, made at once and all or nothing: the request windows, (bucket, per
    minute) each; the concurrency leases, (bucket, limit) each, all under `lease` for `lease_ttl_s`;
    and the reservation. Refused by the first that fails, in that order; then nothing is taken."""

    tenant: str  # whose checks they all are (the shared state keeps a tenant's counters together)
    now: float  # unix time (the windows' clock)
    rates: Sequence[tuple[str, int]] = ()
    leases: Sequence[tuple[str, int]] = ()
    lease: str = ""
    lease_ttl_s: float = 0.0
    reservation: Reservation | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """`verdict`: ok (with the tokens-per-minute window, if any), or the first refusal (with the window
    of the limit that refused); `requests` and `leases`: each window as it stands after the call
    (before it, where refused)."""

    verdict: Verdict
    requests: list[Window]
    leases: list[Window]


Binding = tuple[str, "PendingRun"]  # (reservation, run): a run's reservation, bound to it once its id is known


@dataclass(frozen=True, slots=True)
class CallEnd:
    """What an admitted call gives back as it ends: its `lease` in each of `leases`; but the slots of
    its run (`run_slots`, among `leases`) go to the run while it goes on, or, if it has ended
    (`run_ended`), the run's own slots are released too."""

    tenant: str
    lease: str
    leases: Sequence[str]
    run_id: str | None = None
    run_slots: Sequence[str] = ()
    run_ended: bool = False
    run_ttl_s: float = 0.0


# The owner of an object whose claim a bounded store had to drop (`max_owned_objects`): once any
# claim was dropped, "never seen" cannot be told from "forgotten", so every unknown object reads as
# this owner, which is no tenant's: forgetting denies, it never hands an object to anyone.
FORGOTTEN = "\x00forgotten"


class StateStore(Protocol):
    # Ownership (see gateway/pipeline/tenancy.py): first claim wins. `object_id` is any object a
    # tenant owns (thread, assistant, file, vector store): their ids never collide across kinds.
    async def owners(self, object_ids: Sequence[str]) -> list[str | None]: ...

    # With `bind`, the run is bound in the same step (see `bind`): a call's new run, one round trip.
    async def claim(
        self, tenant: str, object_id: str | None, run_id: str | None = None, bind: Binding | None = None
    ) -> None: ...

    # Admission, in one step (one round trip to Redis): request windows, leases and the reservation.
    async def admit(self, admission: Admission) -> Admitted: ...

    # Requests per minute, counted on a sliding window (the previous minute's count weighted by how
    # much of it is still inside the last 60 s, plus this minute's): `admit` with one window.
    # Every counter, lease and run belongs to a tenant, named first: the shared state keeps a
    # tenant's together (in Redis Cluster, in one hash slot, so each update is one script).
    async def hit_requests(self, tenant: str, key: str, per_minute: int) -> Verdict: ...

    # Concurrency leases: `lease` is unique per call; a lease not released expires after `ttl_s`
    # (a crashed replica cannot hold slots forever). `acquire`: `admit` with one lease.
    async def acquire(self, tenant: str, key: str, lease: str, limit: int, ttl_s: float) -> Verdict: ...

    async def release(self, tenant: str, key: str, lease: str) -> None: ...

    # A run's slots: a call that ends with its run unfinished hands its lease in each of `keys` to the
    # run (a lease named `run_id`, no limit checked, expiring after `ttl_s`; a key the call held no
    # lease in is held all the same: submit_tool_outputs holds no slot of its own). `release_run` frees
    # them wherever the run is seen finished, and a released run is never held again (a poll can see
    # it finished before the call that made it has ended).
    async def hold_for_run(self, tenant: str, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None: ...

    async def release_run(self, tenant: str, run_id: str) -> None: ...

    # A call's end, in one step: its leases back, its run's slots handed over or released (see CallEnd).
    async def end_call(self, end: CallEnd) -> None: ...

    # Tokens and dollars. `reserve` takes `amount` tokens (and with `spend`, its µUSD) from every
    # configured limit at once, or from none (all or nothing, atomic across replicas); `bind` ties
    # the reservation to its run once the run id is known and puts the run on the reconciler's list;
    # `settle` records a run's usage and `cost` (µUSD) exactly once per run id (True the first time)
    # and turns its reservation into what was really used (usage None: charge the whole reservation,
    # the run's real usage could not be learnt); `key` is the ledger's key when the run was not bound
    # with its own; `cancel` gives back a reservation whose call never created a run.
    async def reserve(
        self, reservation: str, tenant: str, amount: int, limits: TokenLimits, now: float, spend: Spend | None = None
    ) -> Verdict: ...

    async def bind(self, reservation: str, run: PendingRun) -> None: ...

    async def settle(
        self, run_id: str, tenant: str, model: str, usage: Usage | None, now: float, *, key: str = NO_KEY, cost: int = 0
    ) -> bool: ...

    async def cancel(self, tenant: str, reservation: str) -> None: ...

    async def tokens_remaining(self, tenant: str, limits: TokenLimits, now: float) -> dict[str, int]: ...

    # µUSD spent (and reserved) by `tenant` (with `key`: by that key of it) in the UTC day and month of `now`.
    async def usd_spent(self, tenant: str, now: float, key: str | None = None) -> tuple[int, int]: ...

    # The reconciler's list: runs not settled whose last look is older than `before`, oldest first.
    async def due_runs(self, before: float, limit: int) -> list[PendingRun]: ...

    async def touch(self, tenant: str, run_id: str, now: float) -> None: ...

    # The ledger behind GET /admin/usage.
    async def usage(self, tenant: str | None, since_day: str) -> list[UsageRow]: ...

    # Records an upstream adapter keeps (the Responses facade: a run and its responses), as opaque
    # JSON bytes under `kind:object_id`, forgotten after `ttl_s`.
    async def put_record(self, kind: str, object_id: str, data: bytes, ttl_s: float) -> None: ...

    async def get_record(self, kind: str, object_id: str) -> bytes | None: ...

    # Lists of ids an adapter keeps (a tenant's assistants, a thread's runs), in the order added;
    # adding and removing are single operations, so concurrent writers never lose one another's ids.
    async def add_to_list(self, kind: str, key: str, member: str, ttl_s: float) -> None: ...

    async def remove_from_list(self, kind: str, key: str, member: str) -> None: ...

    async def list_members(self, kind: str, key: str) -> list[str]: ...

    async def close(self) -> None: ...


class Shortcuts:
    """`hit_requests`, `acquire` and `reserve` as `admit` with one check: one implementation of each;
    and `end_call` step by step, for a store where a step costs no round trip (or that routes each)."""

    async def admit(self, admission: Admission) -> Admitted:
        raise NotImplementedError

    async def hold_for_run(self, tenant: str, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None:
        raise NotImplementedError

    async def release_run(self, tenant: str, run_id: str) -> None:
        raise NotImplementedError

    async def release(self, tenant: str, key: str, lease: str) -> None:
        raise NotImplementedError

    async def end_call(self, end: CallEnd) -> None:
        held = list(end.leases)
        if end.run_id is not None and end.run_slots:
            if end.run_ended:
                await self.release_run(end.tenant, end.run_id)  # a slot it held since an earlier call (tool outputs)
            else:
                await self.hold_for_run(end.tenant, end.run_id, end.run_slots, end.lease, end.run_ttl_s)
                held = [bucket for bucket in held if bucket not in end.run_slots]
        for bucket in held:
            await self.release(end.tenant, bucket, end.lease)

    async def hit_requests(self, tenant: str, key: str, per_minute: int) -> Verdict:
        admitted = await self.admit(Admission(tenant, time.time(), rates=[(key, per_minute)]))
        return replace(admitted.verdict, window=admitted.requests[0])

    async def acquire(self, tenant: str, key: str, lease: str, limit: int, ttl_s: float) -> Verdict:
        admitted = await self.admit(Admission(tenant, time.time(), leases=[(key, limit)], lease=lease, lease_ttl_s=ttl_s))
        return replace(admitted.verdict, window=admitted.leases[0])

    async def reserve(
        self, reservation: str, tenant: str, amount: int, limits: TokenLimits, now: float, spend: Spend | None = None
    ) -> Verdict:
        admitted = await self.admit(Admission(tenant, now, reservation=Reservation(reservation, tenant, amount, limits, spend)))
        return admitted.verdict
