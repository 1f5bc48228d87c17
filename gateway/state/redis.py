"""The shared `StateStore`: Redis, for many replicas (same semantics as `MemoryState`, see there).

Every multi-key update is one Lua script (registered once, run by EVALSHA), so replicas never race.
Every Redis failure or timeout surfaces as `StateUnavailable`; no call waits longer than about
`timeout_s` per round trip (and `2 × timeout_s` in all), and redis-py's own retries are reduced to
one immediate reconnect (a pooled connection Redis closed while restarting).

The key layout and the scripts are in `redis_scripts`; the scripts need a standalone Redis (or one
shard), see there.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

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
    StateUnavailable,
    UsageRow,
)
from gateway.state import redis_scripts as lua
from gateway.state.redis_replies import admitted_from, reserve_args, reserved_buckets
from gateway.state.semantics import (
    LEDGER_DAYS,
    PENDING_TTL_S,
    RATE_TTL_S,
    RELEASED_TTL_S,
    SETTLED_TTL_S,
    limit_values,
    rate_keys,
    token_buckets,
    usd_buckets,
    utc_day,
)

OWNERSHIP_TTL_S = 30 * 86400
_ERRORS = (RedisError, OSError, TimeoutError)
_METRICS = ("runs", "prompt", "completion", "total", "cost")


def _num(value: float) -> str:
    return repr(float(value))


class RedisState(Shortcuts):
    """`StateStore` on Redis, shared by every replica."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        max_owned_objects: int | None = None,
        prefix: str = "gw:",
        max_connections: int = 128,
        ownership_ttl_s: int = OWNERSHIP_TTL_S,
    ) -> None:
        self._prefix = prefix
        self._deadline_s = 2 * timeout_s
        self._max_owned = max_owned_objects or 0
        self._ownership_ttl_s = ownership_ttl_s
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,  # wait for a free pooled connection at most this long
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            decode_responses=True,
        )
        self._redis = Redis(connection_pool=self._pool)
        script = self._redis.register_script
        self._claim_and_bind = script(lua.CLAIM_AND_BIND)
        self._owners = script(lua.OWNERS)
        self._admit = script(lua.ADMIT)
        self._hold_for_run = script(lua.HOLD_FOR_RUN)
        self._release_run = script(lua.RELEASE_RUN)
        self._end_call = script(lua.END_CALL)
        self._bind = script(lua.BIND)
        self._settle = script(lua.SETTLE)
        self._cancel = script(lua.CANCEL)
        self._touch = script(lua.TOUCH)

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._deadline_s):
                yield
        except _ERRORS as exc:
            raise StateUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # Ownership.
    async def owners(self, object_ids: Sequence[str]) -> list[str | None]:
        if not object_ids:
            return []
        async with self._call():
            found = await self._owners(
                keys=[self._key("own:forgot"), self._key("own:t:idx"), *(self._key("own:t", i) for i in object_ids)],
                args=[self._ownership_ttl_s, self._max_owned, FORGOTTEN],
            )
        return [owner or None for owner in found]

    async def claim(
        self, tenant: str, object_id: str | None, run_id: str | None = None, bind: Binding | None = None
    ) -> None:
        keys = [self._key("own:forgot")]
        if object_id is not None:
            keys += [self._key("own:t", object_id), self._key("own:t:idx")]
        if run_id is not None:
            keys += [self._key("own:r", run_id), self._key("own:r:idx")]
        if len(keys) == 1 and bind is None:
            return
        bind_keys, bind_args = self._binding(*bind) if bind is not None else ([], [])
        async with self._call():
            await self._claim_and_bind(
                keys=[*keys, *bind_keys], args=[len(keys), tenant, self._ownership_ttl_s, self._max_owned, *bind_args]
            )

    # Admission, in one script: request windows, leases, reservation (see redis_scripts.ADMIT).
    async def admit(self, admission: Admission) -> Admitted:
        now, wanted = admission.now, admission.reservation
        checked = reserved_buckets(wanted, now)
        async with self._call():
            out = await self._admit(
                keys=[
                    self._key("resv", wanted.reservation if wanted is not None else "-"),
                    *(self._prefix + key for bucket, _ in admission.rates for key in rate_keys(bucket, now)),
                    *(self._key("lease", bucket) for bucket, _ in admission.leases),
                    *(self._prefix + bucket.key for bucket, _ in checked),
                ],
                args=[
                    _num(now), len(admission.rates), len(admission.leases), len(checked), admission.lease,
                    max(1, math.ceil(admission.lease_ttl_s * 1000)), RATE_TTL_S,
                    *(limit for _, limit in admission.rates), *(limit for _, limit in admission.leases),
                    *reserve_args(wanted, checked),
                ],
            )  # fmt: skip
        return admitted_from(admission, [int(v) for v in out], checked)

    async def release(self, key: str, lease: str) -> None:
        async with self._call():
            await self._redis.zrem(self._key("lease", key), lease)

    async def hold_for_run(self, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None:
        async with self._call():
            await self._hold_for_run(
                keys=[self._key("slots", run_id), self._key("slots", run_id, "released"),
                      *(self._key("lease", key) for key in keys)],
                args=[run_id, lease, max(1, math.ceil(ttl_s * 1000))],
            )  # fmt: skip

    async def release_run(self, run_id: str) -> None:
        async with self._call():
            await self._release_run(
                keys=[self._key("slots", run_id), self._key("slots", run_id, "released")], args=[run_id, RELEASED_TTL_S]
            )

    async def end_call(self, end: CallEnd) -> None:
        mode = 0 if end.run_id is None or not end.run_slots else (1 if end.run_ended else 2)
        run_sets = list(end.run_slots) if mode == 2 else []
        others = [bucket for bucket in end.leases if bucket not in run_sets]
        run_id = end.run_id or "-"
        if mode == 0 and not others:
            return
        async with self._call():
            await self._end_call(
                keys=[self._key("slots", run_id), self._key("slots", run_id, "released"),
                      *(self._key("lease", bucket) for bucket in [*run_sets, *others])],
                args=[mode, run_id, end.lease, max(1, math.ceil(end.run_ttl_s * 1000)), RELEASED_TTL_S, len(run_sets)],
            )  # fmt: skip

    # Tokens.
    async def bind(self, reservation: str, run: PendingRun) -> None:
        keys, args = self._binding(reservation, run)
        async with self._call():
            await self._bind(keys=keys, args=args)

    def _binding(self, reservation: str, run: PendingRun) -> tuple[list[str], list[str | int]]:
        """BIND's KEYS and ARGV."""
        keys = [self._key("resv", reservation), self._key("run", run.run_id), self._key("pending"),
                self._key("settled", run.run_id)]  # fmt: skip
        args: list[str | int] = [
            run.run_id, run.thread_id, run.tenant, _num(run.created_at), _num(run.checked_at), PENDING_TTL_S,
            reservation, _num(run.checked_at - PENDING_TTL_S), run.key,
        ]  # fmt: skip
        return keys, args

    async def settle(
        self, run_id: str, tenant: str, model: str, usage: Usage | None, now: float, *, key: str = NO_KEY, cost: int = 0
    ) -> bool:
        day = utc_day(now)
        buckets = token_buckets(tenant, now)
        usd_day, usd_month = usd_buckets("", now)  # the names of now's day and month (owners are the script's)
        counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) if usage else (0, 0, 0)
        async with self._call():
            settled = await self._settle(
                keys=[
                    self._key("settled", run_id),
                    self._key("run", run_id),
                    self._key("pending"),
                    self._key("ledger", day),
                    self._key("ledger:days"),
                    *(self._prefix + b.key for b in buckets),
                ],
                args=[
                    run_id,
                    1 if usage is not None else 0,
                    *counts,
                    SETTLED_TTL_S,
                    (LEDGER_DAYS + 1) * 86400,
                    day,
                    utc_day(now - LEDGER_DAYS * 86400),
                    tenant,
                    model,
                    key,
                    max(0, cost),
                    *(b.ttl_s for b in buckets),
                    self._key("resv", ""),
                    self._key("usdd", ""),
                    self._key("usdmo", ""),
                    usd_day.key.rpartition(":")[2],
                    usd_month.key.rpartition(":")[2],
                ],
            )
        return bool(settled)

    async def cancel(self, reservation: str) -> None:
        async with self._call():
            await self._cancel(keys=[self._key("resv", reservation)])

    async def tokens_remaining(self, tenant: str, limits: TokenLimits, now: float) -> dict[str, int]:
        configured = [
            (bucket, limit)
            for bucket, limit in zip(token_buckets(tenant, now), limit_values(limits), strict=True)
            if limit is not None
        ]
        if not configured:
            return {}
        async with self._call():
            used = await self._redis.mget([self._prefix + bucket.key for bucket, _ in configured])
        return {
            bucket.name: max(0, limit - int(spent or 0))
            for (bucket, limit), spent in zip(configured, used, strict=True)
        }

    async def usd_spent(self, owner: str, now: float) -> tuple[int, int]:
        day, month = usd_buckets(owner, now)
        async with self._call():
            spent = await self._redis.mget([self._prefix + day.key, self._prefix + month.key])
        return int(spent[0] or 0), int(spent[1] or 0)

    # The reconciler's list.
    async def due_runs(self, before: float, limit: int) -> list[PendingRun]:
        runs: list[PendingRun] = []
        pending = self._key("pending")
        async with self._call():
            offset = 0
            while len(runs) < limit:
                want = limit - len(runs)
                ids = cast(
                    list[str],
                    await self._redis.zrangebyscore(pending, "-inf", f"({_num(before)}", start=offset, num=want),
                )
                if not ids:
                    break
                async with self._redis.pipeline(transaction=False) as pipe:
                    for run_id in ids:
                        pipe.hmget(self._key("run", run_id), "thread", "tenant", "created", "checked", "key")
                    found: list[list[str | None]] = await pipe.execute()
                gone = []
                for run_id, (thread, tenant, created, checked, key) in zip(ids, found, strict=True):
                    if thread is None or tenant is None or created is None or checked is None:
                        gone.append(run_id)  # its hash expired: given up on
                    else:
                        runs.append(PendingRun(run_id, thread, tenant, float(created), float(checked), key or NO_KEY))
                if gone:
                    await self._redis.zrem(pending, *gone)
                offset += len(ids) - len(gone)
                if len(ids) < want:
                    break
        return runs

    async def touch(self, run_id: str, now: float) -> None:
        async with self._call():
            await self._touch(keys=[self._key("run", run_id), self._key("pending")], args=[run_id, _num(now)])

    # The ledger.
    async def usage(self, tenant: str | None, since_day: str) -> list[UsageRow]:
        async with self._call():
            days = cast(list[str], await self._redis.zrangebylex(self._key("ledger:days"), f"[{since_day}", "+"))
            if not days:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(self._key("ledger", day))
                tables: list[dict[str, str]] = await pipe.execute()
        counts: dict[tuple[str, str, str, str], dict[str, int]] = {}
        for day, table in zip(days, tables, strict=True):
            for field, value in table.items():
                try:
                    parts = json.loads(field)
                    row_tenant, key, model, metric = parts if len(parts) == 4 else (parts[0], NO_KEY, *parts[1:])
                except (ValueError, TypeError):
                    continue
                if tenant is None or row_tenant == tenant:
                    row = counts.setdefault((day, row_tenant, key, model), {})
                    row[metric] = row.get(metric, 0) + int(value)
        return [
            UsageRow(row_tenant, key, model, day, *(values.get(metric, 0) for metric in _METRICS))
            for (day, row_tenant, key, model), values in sorted(counts.items(), key=lambda item: item[0])
        ]

    async def put_record(self, kind: str, object_id: str, data: bytes, ttl_s: float) -> None:
        async with self._call():
            await self._redis.set(self._key("rec", kind, object_id), data, px=max(int(ttl_s * 1000), 1))

    async def get_record(self, kind: str, object_id: str) -> bytes | None:
        async with self._call():
            found = await self._redis.get(self._key("rec", kind, object_id))
        return found if isinstance(found, bytes) else (found.encode() if isinstance(found, str) else None)

    async def add_to_list(self, kind: str, key: str, member: str, ttl_s: float) -> None:
        name = self._key("list", kind, key)
        async with self._call():  # a sorted set scored by when each id came: the order they were added
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(name, {member: time.time()}, nx=True)
                pipe.pexpire(name, max(int(ttl_s * 1000), 1))
                await pipe.execute()

    async def remove_from_list(self, kind: str, key: str, member: str) -> None:
        async with self._call():
            await self._redis.zrem(self._key("list", kind, key), member)

    async def list_members(self, kind: str, key: str) -> list[str]:
        async with self._call():
            found = await self._redis.zrange(self._key("list", kind, key), 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.aclose()

    # Not in the protocol: for health checks.
    async def ping(self) -> bool:
        async with self._call():
            return bool(await self._redis.ping())
