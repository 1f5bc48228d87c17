"""The embedded `StateStore`: one process, everything in memory (the default backend).

Every update that must not race runs without an `await` between its read and its write, so it is
atomic on the event loop. Everything that could grow is bounded: ownership by an LRU of
`max_owned_objects` threads and runs; reservations, pending runs and settled markers by a TTL
(and by `max_owned_objects` each, oldest dropped first); token buckets by their window; the
ledger by `LEDGER_DAYS`.

The semantics it shares with `RedisState` are `gateway/state/semantics.py`'s.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from cachetools import LRUCache

from gateway.domain import TokenLimits, Usage
from gateway.state import (
    FORGOTTEN,
    NO_KEY,
    REQUESTS_PER_MINUTE,
    Admission,
    Admitted,
    Binding,
    PendingRun,
    Reservation,
    Shortcuts,
    UsageRow,
    Verdict,
    Window,
)
from gateway.state.memory_entries import Held, Owners, Pending
from gateway.state.semantics import (
    LEASE_RETRY_AFTER_S,
    LEDGER_DAYS,
    PENDING_TTL_S,
    RATE_TTL_S,
    RELEASED_TTL_S,
    SETTLED_TTL_S,
    Bucket,
    key_owner,
    lease_limit_name,
    limit_values,
    rate_check,
    rate_keys,
    spend_buckets,
    token_buckets,
    token_verdict,
    usd_buckets,
    usd_verdict,
    utc_day,
)

_PRUNE_EVERY_S = 60.0


def _nothing() -> None:
    return None


class MemoryState(Shortcuts):
    """`StateStore` for one process."""

    def __init__(self, max_owned_objects: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic  # lease expiry; tests step it instead of sleeping
        self._max = max_owned_objects
        self._owners = Owners(max_owned_objects)
        self._records: LRUCache[str, tuple[bytes, float]] = LRUCache(max_owned_objects)  # → (data, expiry)
        self._lists: LRUCache[str, tuple[dict[str, None], float]] = LRUCache(max_owned_objects)  # → (ids, expiry)
        self._runs: LRUCache[str, str] = LRUCache(max_owned_objects)
        self._leases: dict[str, dict[str, float]] = {}  # key → lease → expiry (monotonic)
        # run id → the lease keys it holds (a tuple: a set costs 200 bytes more, and a run holds one or two)
        self._run_slots: dict[str, tuple[str, ...]] = {}
        self._released: dict[str, float] = {}  # run id → expiry (monotonic) of its "released" mark
        self._buckets: dict[str, list[float]] = {}  # key → [used, expiry]
        self._reservations: dict[str, Held] = {}
        self._pending: dict[str, Pending] = {}
        self._settled: dict[str, float] = {}  # run id → expiry, oldest first
        # day → (tenant, key, model) → [runs, prompt, completion, total, cost µUSD]
        self._ledger: dict[str, dict[tuple[str, str, str], list[int]]] = {}
        self._clock = 0.0  # the latest wall-clock time seen (`now` arguments and run times)
        self._next_prune = 0.0

    # Ownership.
    async def owners(self, object_ids: Sequence[str]) -> list[str | None]:
        unknown = FORGOTTEN if self._owners.forgot else None
        return [self._owners.get(object_id, unknown) for object_id in object_ids]

    async def claim(
        self, tenant: str, object_id: str | None, run_id: str | None = None, bind: Binding | None = None
    ) -> None:
        if object_id is not None:
            self._owners.setdefault(object_id, tenant)
        if run_id is not None:
            self._runs.setdefault(run_id, tenant)
        if bind is not None:
            await self.bind(*bind)

    # Admission: request windows, leases, reservation; checked in that order, then all taken or none.
    async def admit(self, admission: Admission) -> Admitted:
        now = admission.now
        self._tick(now)
        rates = [rate_check(limit, *self._rate_counts(bucket, now), now) for bucket, limit in admission.rates]
        requests = [check.window for check in rates]
        for check in rates:
            if not check.ok:
                return Admitted(Verdict(False, check.window, REQUESTS_PER_MINUTE, check.retry_after_s), requests, [])
        leases, refused = self._check_leases(admission)
        if refused is not None:
            return Admitted(refused, requests, leases)
        verdict, take = self._check_reservation(admission.reservation, now)
        if not verdict.ok:
            return Admitted(verdict, requests, leases)
        for bucket, _ in admission.rates:
            self._add(rate_keys(bucket, now)[0], 1, now + RATE_TTL_S)
        held_until = self._monotonic() + admission.lease_ttl_s
        for bucket, _ in admission.leases:
            self._leases.setdefault(bucket, {})[admission.lease] = held_until
        take()
        return Admitted(verdict, requests, leases)

    def _rate_counts(self, bucket: str, now: float) -> tuple[int, int]:
        current, previous = rate_keys(bucket, now)
        return int(self._used(previous)), int(self._used(current))

    def _check_leases(self, admission: Admission) -> tuple[list[Window], Verdict | None]:
        now, windows = self._monotonic(), list[Window]()
        for bucket, limit in admission.leases:
            held = self._leases.get(bucket, {})
            if admission.lease not in held and len(held) >= limit:
                # Expired leases are swept only here, where they could refuse a call: a sweep on every
                # call costs a pass over all of a key's leases (thousands, with runs that hold their
                # slots), and unswept ones never number more than `limit`.
                held = self._live_leases(bucket, now)
                if len(held) >= limit:
                    wait = min(held.values()) - now if held else admission.lease_ttl_s
                    refused = Window(limit, 0, wait)
                    retry = min(max(wait, 0.0), LEASE_RETRY_AFTER_S)
                    return [*windows, refused], Verdict(False, refused, lease_limit_name(bucket), retry)
            taken = len(held) + (admission.lease not in held)
            windows.append(Window(limit, max(0, limit - taken), 0.0))
        return windows, None

    async def release(self, tenant: str, key: str, lease: str) -> None:
        self._drop(key, lease)

    async def hold_for_run(self, tenant: str, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None:
        now = self._monotonic()
        released = self._released.get(run_id, now) > now
        for key in keys:
            self._drop(key, lease)
            if not released:
                self._leases.setdefault(key, {})[run_id] = now + ttl_s
        if not released:
            self._run_slots[run_id] = tuple(dict.fromkeys((*self._run_slots.get(run_id, ()), *keys)))
            self._bound(self._run_slots)

    async def release_run(self, tenant: str, run_id: str) -> None:
        for key in self._run_slots.pop(run_id, ()):
            self._drop(key, run_id)
        self._released[run_id] = self._monotonic() + RELEASED_TTL_S
        self._bound(self._released)

    def _drop(self, key: str, lease: str) -> None:
        held = self._leases.get(key)
        if held is not None:
            held.pop(lease, None)
            if not held:
                del self._leases[key]

    def _live_leases(self, key: str, now: float) -> dict[str, float]:
        held = self._leases.get(key)
        if held is None:
            return {}
        for lease in [lease for lease, expiry in held.items() if expiry <= now]:
            del held[lease]
        if not held:
            del self._leases[key]
        return held

    # Tokens.
    def _check_reservation(self, wanted: Reservation | None, now: float) -> tuple[Verdict, Callable[[], None]]:
        """The reservation's verdict, and how to take it (nothing to take when refused or already held)."""
        if wanted is None:
            return Verdict(True), _nothing
        limits, amount = wanted.limits, max(0, wanted.tokens)
        buckets = token_buckets(wanted.tenant, now)
        used = [self._used(b.key) for b in buckets]
        if wanted.reservation in self._reservations:
            return token_verdict(buckets, limits, int(used[0]), None), _nothing
        for index, (limit, spent) in enumerate(zip(limit_values(limits), used, strict=True)):
            if limit is not None and spent + amount > limit:
                return token_verdict(buckets, limits, int(used[0]), index), _nothing
        spend = wanted.spend
        usd, micros = (spend_buckets(wanted.tenant, spend, now), max(0, spend.micros)) if spend is not None else ([], 0)
        for bucket, limit in usd:
            spent_usd = int(self._used(bucket.key))
            if limit is not None and spent_usd + micros > limit:
                return usd_verdict(token_verdict(buckets, limits, int(used[0]), None), bucket, limit, spent_usd), _nothing

        def take() -> None:
            for bucket in buckets:
                self._add(bucket.key, amount, now + bucket.ttl_s)
            for bucket, _ in usd:
                self._add(bucket.key, micros, now + bucket.ttl_s)
            keys = (buckets[0].key, buckets[1].key, buckets[2].key)
            usd_keys = tuple(bucket.key for bucket, _ in usd)
            held = Held(wanted.tenant, amount, keys, now + PENDING_TTL_S, micros, usd_keys)
            self._reservations[wanted.reservation] = held
            self._bound(self._reservations)

        return token_verdict(buckets, limits, int(used[0]) + amount, None), take

    async def bind(self, reservation: str, run: PendingRun) -> None:
        self._tick(max(run.created_at, run.checked_at))
        if self._is_settled(run.run_id):
            self._give_back(reservation)
            return
        held = self._reservations.get(reservation)
        if held is not None:
            held.expires = max(held.expires, run.created_at + PENDING_TTL_S)
        self._pending[run.run_id] = Pending(
            run, reservation if held is not None else None, run.created_at + PENDING_TTL_S
        )
        self._bound(self._pending)

    async def settle(
        self, run_id: str, tenant: str, model: str, usage: Usage | None, now: float, *, key: str = NO_KEY, cost: int = 0
    ) -> bool:
        self._tick(now)
        if self._is_settled(run_id):
            return False
        self._settled[run_id] = now + SETTLED_TTL_S
        self._bound(self._settled)
        pending = self._pending.pop(run_id, None)
        key = pending.run.key if pending is not None else key
        held = self._reservations.pop(pending.reservation, None) if pending and pending.reservation else None
        if held is not None:
            if usage is not None:
                for bucket_key in held.keys:
                    self._adjust(bucket_key, usage.total_tokens - held.amount)
        elif usage is not None:
            self._charge(token_buckets(tenant, now), usage.total_tokens, now)
        if usage is not None:
            if held is not None and held.usd_keys:
                for bucket_key in held.usd_keys:
                    self._adjust(bucket_key, cost - held.usd)
            else:
                self._charge((*usd_buckets(tenant, now), *usd_buckets(key_owner(tenant, key), now)), cost, now)
        row = self._ledger.setdefault(utc_day(now), {}).setdefault((tenant, key, model), [0, 0, 0, 0, 0])
        row[0] += 1
        if usage is not None:
            row[1] += usage.prompt_tokens
            row[2] += usage.completion_tokens
            row[3] += usage.total_tokens
            row[4] += cost
        return True

    async def cancel(self, tenant: str, reservation: str) -> None:
        self._give_back(reservation)

    async def tokens_remaining(self, tenant: str, limits: TokenLimits, now: float) -> dict[str, int]:
        self._tick(now)
        remaining: dict[str, int] = {}
        for bucket, limit in zip(token_buckets(tenant, now), limit_values(limits), strict=True):
            if limit is not None:
                remaining[bucket.name] = max(0, limit - int(self._used(bucket.key)))
        return remaining

    async def usd_spent(self, tenant: str, now: float, key: str | None = None) -> tuple[int, int]:
        self._tick(now)
        day, month = usd_buckets(tenant if key is None else key_owner(tenant, key), now)
        return int(self._used(day.key)), int(self._used(month.key))

    # The reconciler's list.
    async def due_runs(self, before: float, limit: int) -> list[PendingRun]:
        self._prune()
        due = (p.run for p in self._pending.values() if p.run.checked_at < before)
        return heapq.nsmallest(limit, due, key=lambda run: run.checked_at)

    async def touch(self, tenant: str, run_id: str, now: float) -> None:
        self._tick(now)
        pending = self._pending.get(run_id)
        if pending is not None:
            pending.run = replace(pending.run, checked_at=now)

    # The ledger.
    async def usage(self, tenant: str | None, since_day: str) -> list[UsageRow]:
        rows = [
            UsageRow(row_tenant, key, model, day, *counts)
            for day, by_key in self._ledger.items()
            if day >= since_day
            for (row_tenant, key, model), counts in by_key.items()
            if tenant is None or row_tenant == tenant
        ]
        rows.sort(key=lambda row: (row.day, row.tenant, row.key, row.model))
        return rows

    # Adapter records.
    async def put_record(self, kind: str, object_id: str, data: bytes, ttl_s: float) -> None:
        self._records[f"{kind}:{object_id}"] = (data, self._monotonic() + ttl_s)

    async def get_record(self, kind: str, object_id: str) -> bytes | None:
        found = self._records.get(f"{kind}:{object_id}")
        return found[0] if found is not None and found[1] > self._monotonic() else None

    async def add_to_list(self, kind: str, key: str, member: str, ttl_s: float) -> None:
        members = self._live_list(f"{kind}:{key}")
        members[member] = None
        self._lists[f"{kind}:{key}"] = (members, self._monotonic() + ttl_s)

    async def remove_from_list(self, kind: str, key: str, member: str) -> None:
        self._live_list(f"{kind}:{key}").pop(member, None)

    async def list_members(self, kind: str, key: str) -> list[str]:
        return list(self._live_list(f"{kind}:{key}"))

    def _live_list(self, name: str) -> dict[str, None]:
        found = self._lists.get(name)
        return found[0] if found is not None and found[1] > self._monotonic() else {}

    async def close(self) -> None:
        return None

    # Internals: buckets live on the store's clock, the latest wall-clock time seen.
    def _used(self, key: str) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return 0
        if entry[1] <= self._clock:
            del self._buckets[key]
            return 0
        return entry[0]

    def _add(self, key: str, amount: int, expiry: float) -> None:
        entry = self._buckets.get(key)
        if entry is None or entry[1] <= self._clock:
            self._buckets[key] = [amount, expiry]
        else:
            entry[0] += amount

    def _charge(self, buckets: tuple[Bucket, ...], amount: int, now: float) -> None:
        if amount > 0:
            for bucket in buckets:
                self._add(bucket.key, amount, now + bucket.ttl_s)

    def _adjust(self, key: str, delta: int) -> None:
        """Change a bucket that still exists (a window already over is left alone), floored at 0."""
        entry = self._buckets.get(key)
        if entry is not None and entry[1] > self._clock:
            entry[0] = max(0, entry[0] + delta)

    def _give_back(self, reservation: str) -> None:
        held = self._reservations.pop(reservation, None)
        if held is not None:
            for key in held.keys:
                self._adjust(key, -held.amount)
            for key in held.usd_keys:
                self._adjust(key, -held.usd)

    def _is_settled(self, run_id: str) -> bool:
        expiry = self._settled.get(run_id)
        return expiry is not None and expiry > self._clock

    def _tick(self, now: float) -> None:
        if now > self._clock:
            self._clock = now
        if self._clock >= self._next_prune:
            self._prune()

    def _prune(self) -> None:
        clock = self._clock
        self._next_prune = clock + _PRUNE_EVERY_S
        for key in [k for k, (_, expiry) in self._buckets.items() if expiry <= clock]:
            del self._buckets[key]
        for rid in [r for r, held in self._reservations.items() if held.expires <= clock]:
            del self._reservations[rid]
        for run_id in [r for r, pending in self._pending.items() if pending.expires <= clock]:
            del self._pending[run_id]
        while self._settled:
            oldest, expiry = next(iter(self._settled.items()))
            if expiry > clock:
                break
            del self._settled[oldest]
        if clock > 0:
            first_day = utc_day(clock - LEDGER_DAYS * 86400)
            for day in [d for d in self._ledger if d < first_day]:
                del self._ledger[day]

    def _bound(
        self, entries: dict[str, Held] | dict[str, Pending] | dict[str, float] | dict[str, tuple[str, ...]]
    ) -> None:
        while len(entries) > self._max:
            del entries[next(iter(entries))]
