"""The shared `StateStore`: Redis, for many replicas (same semantics as `MemoryState`, see there).

Every multi-key update is one Lua script (registered once, run by EVALSHA), so replicas never race.
Every Redis failure or timeout surfaces as `StateUnavailable`; no call waits longer than about
`timeout_s` per round trip (and `2 × timeout_s` in all), and redis-py's own retries are reduced to
one immediate reconnect (a pooled connection Redis closed while restarting).

The key layout and the scripts are in `redis_scripts`. Every script touches the keys of one hash
slot (a tenant's, or the ownership index's), so the same code runs on a standalone Redis and on a
Redis Cluster (`cluster=True`); there a run's claim and its bind, which live in two slots, are two
scripts sent at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import cast

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

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
from gateway.state.redis_replies import admitted_from, ledger_rows, reserve_args, reserved_buckets
from gateway.state.semantics import (
    LEDGER_DAYS,
    PENDING_TTL_S,
    RATE_TTL_S,
    RELEASED_TTL_S,
    SETTLED_TTL_S,
    key_owner,
    limit_values,
    rate_keys,
    token_buckets,
    usd_buckets,
    utc_day,
)

OWNERSHIP_TTL_S = 30 * 86400
TENANTS_REFRESH_S = 60.0
"""How often a replica adds a tenant it writes runs for to the tenants list again: the list is lost with a
Redis that restarts empty, and a tenant off it is walked by neither the reconciler nor the ledger."""
_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


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
        prefix: str = lua.PREFIX,
        max_connections: int = 128,
        ownership_ttl_s: int = OWNERSHIP_TTL_S,
        cluster: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix = prefix
        self._own = prefix + "{own}:"  # the ownership index: one slot, since one script reads several objects
        self._deadline_s = 2 * timeout_s
        self._max_owned = max_owned_objects or 0
        self._ownership_ttl_s = ownership_ttl_s
        self._monotonic = monotonic
        self._registered: dict[str, float] = {}  # tenant → when this process last put it on the tenants list
        self._redis: Redis | RedisCluster
        if cluster:
            # Connections are per node (`max_connections` each). The cluster client keeps its own retries
            # (it re-reads the topology between them); `_call`'s deadline bounds them. A node down
            # leaves its slots unserved: the other tenants' calls go on (not `require_full_coverage`).
            self._redis = RedisCluster.from_url(
                url, max_connections=max_connections, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                decode_responses=True, require_full_coverage=False,
            )  # fmt: skip
        else:
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            self._redis = Redis(
                connection_pool=BlockingConnectionPool.from_url(
                    url, max_connections=max_connections,
                    timeout=timeout_s,  # wait for a free pooled connection at most this long
                    socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=retry, decode_responses=True,
                )  # fmt: skip
            )
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
                if isinstance(self._redis, RedisCluster):
                    # Learn the topology under redis-py's lock first (a no-op once known): left to the
                    # commands, calls in flight together broke each other's connections (redis-py 8.1).
                    await self._redis.initialize()
                yield
        except _ERRORS as exc:
            raise StateUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _of(self, tenant: str) -> str:
        """Where `tenant`'s keys start: its name is their hash tag, so a cluster keeps them in one slot."""
        return f"{self._prefix}{{{tenant or '-'}}}:"

    async def _register(self, tenant: str) -> None:
        """Put `tenant` on the list the reconciler and the ledger walk: a set add, at most once per
        `TENANTS_REFRESH_S` (not once for good: a Redis that restarted empty has lost the list)."""
        now = self._monotonic()
        if now - self._registered.get(tenant, -math.inf) >= TENANTS_REFRESH_S:
            await self._redis.sadd(self._prefix + "tenants", tenant)
            self._registered[tenant] = now

    async def _tenants(self) -> list[str]:
        return sorted(cast(set[str], await self._redis.smembers(self._prefix + "tenants")))

    # Ownership.
    async def owners(self, object_ids: Sequence[str]) -> list[str | None]:
        if not object_ids:
            return []
        async with self._call():
            found = await self._owners(
                keys=[self._own + "forgot", self._own + "t:idx", *(self._own + "t:" + i for i in object_ids)],
                args=[self._ownership_ttl_s, self._max_owned, FORGOTTEN],
            )
        return [owner or None for owner in found]

    async def claim(
        self, tenant: str, object_id: str | None, run_id: str | None = None, bind: Binding | None = None
    ) -> None:
        keys = [self._own + "forgot"]
        if object_id is not None:
            keys += [self._own + "t:" + object_id, self._own + "t:idx"]
        if run_id is not None:
            keys += [self._own + "r:" + run_id, self._own + "r:idx"]
        if len(keys) == 1 and bind is None:
            return
        claim_args: list[str | int] = [len(keys), tenant, self._ownership_ttl_s, self._max_owned]
        async with self._call():
            if bind is None:
                await self._claim_and_bind(keys=keys, args=claim_args)
                return
            bind_keys, bind_args = self._binding(*bind)
            await self._register(bind[1].tenant)
            if isinstance(self._redis, RedisCluster):  # two slots: the claim's and the run's tenant's, at once
                await asyncio.gather(self._claim_and_bind(keys=keys, args=claim_args), self._bind(keys=bind_keys, args=bind_args))
            else:
                await self._claim_and_bind(keys=[*keys, *bind_keys], args=[*claim_args, *bind_args])

    # Admission, in one script: request windows, leases, reservation (see redis_scripts.ADMIT).
    async def admit(self, admission: Admission) -> Admitted:
        now, wanted = admission.now, admission.reservation
        checked = reserved_buckets(wanted, now)
        of = self._of(admission.tenant)
        async with self._call():
            out = await self._admit(
                keys=[
                    of + "resv:" + (wanted.reservation if wanted is not None else "-"),
                    *(of + key for bucket, _ in admission.rates for key in rate_keys(bucket, now)),
                    *(of + "lease:" + bucket for bucket, _ in admission.leases),
                    *(of + bucket.key for bucket, _ in checked),
                ],
                args=[
                    _num(now), len(admission.rates), len(admission.leases), len(checked), admission.lease,
                    max(1, math.ceil(admission.lease_ttl_s * 1000)), RATE_TTL_S,
                    *(limit for _, limit in admission.rates), *(limit for _, limit in admission.leases),
                    *reserve_args(wanted, checked),
                ],
            )  # fmt: skip
        return admitted_from(admission, [int(v) for v in out], checked)

    async def release(self, tenant: str, key: str, lease: str) -> None:
        async with self._call():
            await self._redis.zrem(self._of(tenant) + "lease:" + key, lease)

    async def hold_for_run(self, tenant: str, run_id: str, keys: Sequence[str], lease: str, ttl_s: float) -> None:
        of = self._of(tenant)
        async with self._call():
            await self._hold_for_run(
                keys=[*self._slots(of, run_id), *(of + "lease:" + key for key in keys)],
                args=[run_id, lease, max(1, math.ceil(ttl_s * 1000))],
            )

    async def release_run(self, tenant: str, run_id: str) -> None:
        async with self._call():
            await self._release_run(keys=self._slots(self._of(tenant), run_id), args=[run_id, RELEASED_TTL_S])

    @staticmethod
    def _slots(of: str, run_id: str) -> list[str]:
        """A run's slots, and its mark of having released them."""
        return [f"{of}slots:{run_id}", f"{of}slots:{run_id}:released"]

    async def end_call(self, end: CallEnd) -> None:
        mode = 0 if end.run_id is None or not end.run_slots else (1 if end.run_ended else 2)
        run_sets = list(end.run_slots) if mode == 2 else []
        others = [bucket for bucket in end.leases if bucket not in run_sets]
        run_id = end.run_id or "-"
        if mode == 0 and not others:
            return
        of = self._of(end.tenant)
        async with self._call():
            await self._end_call(
                keys=[*self._slots(of, run_id), *(of + "lease:" + bucket for bucket in [*run_sets, *others])],
                args=[mode, run_id, end.lease, max(1, math.ceil(end.run_ttl_s * 1000)), RELEASED_TTL_S, len(run_sets)],
            )  # fmt: skip

    # Tokens.
    async def bind(self, reservation: str, run: PendingRun) -> None:
        keys, args = self._binding(reservation, run)
        async with self._call():
            await self._register(run.tenant)
            await self._bind(keys=keys, args=args)

    def _binding(self, reservation: str, run: PendingRun) -> tuple[list[str], list[str | int]]:
        """BIND's KEYS and ARGV."""
        of = self._of(run.tenant)
        keys = [of + "resv:" + reservation, of + "run:" + run.run_id, of + "pending", of + "settled:" + run.run_id]
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
        of = self._of(tenant)
        async with self._call():
            await self._register(tenant)
            settled = await self._settle(
                keys=[
                    of + "settled:" + run_id,
                    of + "run:" + run_id,
                    of + "pending",
                    of + "ledger:" + day,
                    of + "ledger:days",
                    *(of + b.key for b in buckets),
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
                    of + "resv:",
                    of + "usdd:",
                    of + "usdmo:",
                    usd_day.key.rpartition(":")[2],
                    usd_month.key.rpartition(":")[2],
                ],
            )
        return bool(settled)

    async def cancel(self, tenant: str, reservation: str) -> None:
        async with self._call():
            await self._cancel(keys=[self._of(tenant) + "resv:" + reservation])

    async def tokens_remaining(self, tenant: str, limits: TokenLimits, now: float) -> dict[str, int]:
        configured = [
            (bucket, limit)
            for bucket, limit in zip(token_buckets(tenant, now), limit_values(limits), strict=True)
            if limit is not None
        ]
        if not configured:
            return {}
        async with self._call():
            used = await self._redis.mget([self._of(tenant) + bucket.key for bucket, _ in configured])
        return {
            bucket.name: max(0, limit - int(spent or 0))
            for (bucket, limit), spent in zip(configured, used, strict=True)
        }

    async def usd_spent(self, tenant: str, now: float, key: str | None = None) -> tuple[int, int]:
        day, month = usd_buckets(tenant if key is None else key_owner(tenant, key), now)
        of = self._of(tenant)
        async with self._call():
            spent = await self._redis.mget([of + day.key, of + month.key])
        return int(spent[0] or 0), int(spent[1] or 0)

    # The reconciler's list: each tenant's pending runs, oldest first across them.
    async def due_runs(self, before: float, limit: int) -> list[PendingRun]:
        runs: list[PendingRun] = []
        async with self._call():
            for tenant in await self._tenants():
                runs += await self._due_runs_of(self._of(tenant), before, limit)
        return sorted(runs, key=lambda run: run.checked_at)[:limit]

    async def _due_runs_of(self, of: str, before: float, limit: int) -> list[PendingRun]:
        runs: list[PendingRun] = []
        offset = 0
        while len(runs) < limit:
            want = limit - len(runs)
            ids = cast(
                list[str],
                await self._redis.zrangebyscore(of + "pending", "-inf", f"({_num(before)}", start=offset, num=want),
            )
            if not ids:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for run_id in ids:
                    pipe.hmget(of + "run:" + run_id, "thread", "tenant", "created", "checked", "key")
                found: list[list[str | None]] = await pipe.execute()
            gone = []
            for run_id, (thread, tenant, created, checked, key) in zip(ids, found, strict=True):
                if thread is None or tenant is None or created is None or checked is None:
                    gone.append(run_id)  # its hash expired: given up on
                else:
                    runs.append(PendingRun(run_id, thread, tenant, float(created), float(checked), key or NO_KEY))
            if gone:
                await self._redis.zrem(of + "pending", *gone)
            offset += len(ids) - len(gone)
            if len(ids) < want:
                break
        return runs

    async def touch(self, tenant: str, run_id: str, now: float) -> None:
        of = self._of(tenant)
        async with self._call():
            await self._touch(keys=[of + "run:" + run_id, of + "pending"], args=[run_id, _num(now)])

    # The ledger: each tenant's days (and the days written before the ledger was kept per tenant).
    async def usage(self, tenant: str | None, since_day: str) -> list[UsageRow]:
        tables: list[tuple[str, dict[str, str]]] = []
        async with self._call():
            tenants = [tenant] if tenant is not None else await self._tenants()
            for where in [self._prefix, *(self._of(t) for t in tenants)]:
                tables += await self._ledger_days(where, since_day)
        return ledger_rows(tables, tenant)

    async def _ledger_days(self, where: str, since_day: str) -> list[tuple[str, dict[str, str]]]:
        days = cast(list[str], await self._redis.zrangebylex(where + "ledger:days", f"[{since_day}", "+"))
        if not days:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hgetall(where + "ledger:" + day)
            tables: list[dict[str, str]] = await pipe.execute()
        return list(zip(days, tables, strict=True))

    async def put_record(self, kind: str, object_id: str, data: bytes, ttl_s: float) -> None:
        async with self._call():
            await self._redis.set(self._prefix + f"rec:{kind}:{object_id}", data, px=max(int(ttl_s * 1000), 1))

    async def get_record(self, kind: str, object_id: str) -> bytes | None:
        async with self._call():
            found = await self._redis.get(self._prefix + f"rec:{kind}:{object_id}")
        return found if isinstance(found, bytes) else (found.encode() if isinstance(found, str) else None)

    async def add_to_list(self, kind: str, key: str, member: str, ttl_s: float) -> None:
        name = self._prefix + f"list:{kind}:{key}"
        async with self._call():  # a sorted set scored by when each id came: the order they were added
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(name, {member: time.time()}, nx=True)
                pipe.pexpire(name, max(int(ttl_s * 1000), 1))
                await pipe.execute()

    async def remove_from_list(self, kind: str, key: str, member: str) -> None:
        async with self._call():
            await self._redis.zrem(self._prefix + f"list:{kind}:{key}", member)

    async def list_members(self, kind: str, key: str) -> list[str]:
        async with self._call():
            found = await self._redis.zrange(self._prefix + f"list:{kind}:{key}", 0, -1)
        return [m.decode() if isinstance(m, bytes) else str(m) for m in found]

    async def close(self) -> None:
        await self._redis.aclose()

    # Not in the protocol: for health checks.
    async def ping(self) -> bool:
        async with self._call():
            return bool(await self._redis.ping())
