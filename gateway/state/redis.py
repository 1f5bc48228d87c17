"""The shared `StateStore`: Redis, for many replicas (same semantics as `MemoryState`, see there).

Every multi-key update is one Lua script (registered once, run by EVALSHA), so replicas never race.
Every Redis failure or timeout surfaces as `StateUnavailable`; no call waits longer than about
`timeout_s` per round trip (and `2 × timeout_s` in all), and redis-py's own retries are reduced to
one immediate reconnect (a pooled connection Redis closed while restarting).

Keys (all under `prefix`, `gw:` by default, so deployments can share a Redis):

    own:t:{thread_id}, own:r:{run_id}   owning tenant; SET NX, TTL `ownership_ttl_s` refreshed on each look
    own:t:idx, own:r:idx                ZSET key → last use (ms); trimmed to `max_owned_objects` (LRU), if given
    limits:{key}                        requests per minute: the `limits` moving window (a list of timestamps)
    lease:{key}                         ZSET lease → expiry (ms, Redis's clock)
    tpm:{tenant}:{YYYYMMDDHHMM}         tokens counted in that UTC minute (TTL 120 s)
    tpd:{tenant}:{YYYY-MM-DD}           … that UTC day (TTL a day past its end)
    tpmo:{tenant}:{YYYY-MM}             … that UTC month (TTL a day past its end)
    resv:{reservation}                  HASH tenant, amount, m, d, mo (its bucket keys), run; TTL 2 days
    run:{run_id}                        HASH thread, tenant, created, checked, resv; TTL 2 days
    pending                             ZSET run id → checked_at
    settled:{run_id}                    the exactly-once marker; TTL 7 days
    ledger:{YYYY-MM-DD}                 HASH '["tenant","model","runs|prompt|completion|total"]' → count; TTL 400 days
    ledger:days                         ZSET (all scores 0, ordered by name) of the ledger's days

Scripts reach keys named inside other keys (a reservation's buckets, evicted owners), so the store
needs a standalone Redis (or one shard: give a hash-tagged prefix such as `{gw}:`).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import limits.errors
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..runs import Usage
from . import PendingRun, StateUnavailable, TokenLimits, UsageRow, Verdict, Window
from .memory import (
    LEASE_RETRY_AFTER_S,
    LEDGER_DAYS,
    PENDING_TTL_S,
    SETTLED_TTL_S,
    PerMinute,
    lease_limit_name,
    limit_values,
    token_buckets,
    token_verdict,
    utc_day,
    window_of,
)

OWNERSHIP_TTL_S = 30 * 86400
_ERRORS = (RedisError, OSError, TimeoutError, limits.errors.StorageError)
_METRICS = ("runs", "prompt", "completion", "total")

_GIVE_BACK = """
local function give_back(resv)
  local r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo')
  if not r[1] then return 0 end
  local amount = tonumber(r[1])
  for i = 2, 4 do
    if r[i] and redis.call('EXISTS', r[i]) == 1 then
      if redis.call('DECRBY', r[i], amount) < 0 then redis.call('SET', r[i], 0, 'KEEPTTL') end
    end
  end
  redis.call('DEL', resv)
  return 1
end
"""

# KEYS: (object, index) pairs. ARGV: tenant, ttl_s, max objects (0: no index).
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[3])
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'EX', ARGV[2]) and max > 0 then
    redis.call('ZADD', KEYS[i + 1], now, KEYS[i])
    redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - tonumber(ARGV[2]) * 1000)
    local extra = redis.call('ZCARD', KEYS[i + 1]) - max
    if extra > 0 then
      local evicted = redis.call('ZPOPMIN', KEYS[i + 1], extra)
      for j = 1, #evicted, 2 do redis.call('DEL', evicted[j]) end
    end
  end
end
return 1
"""

# KEYS: object, index. ARGV: ttl_s, max objects (0: no index).
_OWNER = """
local owner = redis.call('GET', KEYS[1])
if owner then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if tonumber(ARGV[2]) > 0 then
    local t = redis.call('TIME')
    redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), KEYS[1])
  end
end
return owner
"""

# KEYS: lease set. ARGV: lease, limit, ttl_ms. → {ok, remaining, ms until the oldest lease expires}
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
local count = redis.call('ZCARD', KEYS[1])
if not held and count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = ttl
  if oldest[2] then wait = tonumber(oldest[2]) - now end
  return {0, 0, wait}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
if not held then count = count + 1 end
return {1, limit - count, 0}
"""

# KEYS: reservation, minute, day, month buckets.
# ARGV: amount, 3 limits (-1: none), 3 bucket TTLs, reservation TTL, tenant.
# → {ok, index of the refusing limit (1-3), minute bucket after (ok) or before (refused)}
_RESERVE = """
local amount = tonumber(ARGV[1])
local used = {}
for i = 1, 3 do used[i] = tonumber(redis.call('GET', KEYS[i + 1]) or '0') end
if redis.call('EXISTS', KEYS[1]) == 1 then return {1, 0, used[1]} end
for i = 1, 3 do
  local limit = tonumber(ARGV[i + 1])
  if limit >= 0 and used[i] + amount > limit then return {0, i, used[1]} end
end
for i = 1, 3 do
  redis.call('INCRBY', KEYS[i + 1], amount)
  if redis.call('TTL', KEYS[i + 1]) < 0 then redis.call('EXPIRE', KEYS[i + 1], ARGV[i + 4]) end
end
redis.call('HSET', KEYS[1], 'tenant', ARGV[9], 'amount', amount, 'm', KEYS[2], 'd', KEYS[3], 'mo', KEYS[4])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {1, 0, used[1] + amount}
"""

# KEYS: reservation, run, pending, settled marker.
# ARGV: run id, thread, tenant, created, checked, ttl, reservation id, pending cutoff.
_BIND = (
    _GIVE_BACK
    + """
if redis.call('EXISTS', KEYS[4]) == 1 then
  give_back(KEYS[1])
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[8])
redis.call('HSET', KEYS[2], 'thread', ARGV[2], 'tenant', ARGV[3], 'created', ARGV[4], 'checked', ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[2], 'resv', ARGV[7])
  redis.call('HSET', KEYS[1], 'run', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
return 1
"""
)

# KEYS: settled marker, run, pending, ledger day, ledger days, the minute/day/month buckets of now.
# ARGV: run id, has usage (1/0), prompt, completion, total, settled TTL, ledger TTL, day, oldest day kept,
#       4 ledger fields (runs, prompt, completion, total), 3 bucket TTLs, reservation key prefix.
_SETTLE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[6]) then return 0 end
local has_usage = ARGV[2] == '1'
local total = tonumber(ARGV[5])
local resv_id = redis.call('HGET', KEYS[2], 'resv')
local r = {false}
local resv = nil
if resv_id then
  resv = ARGV[17] .. resv_id
  r = redis.call('HMGET', resv, 'amount', 'm', 'd', 'mo')
end
if r[1] then
  if has_usage then
    local delta = total - tonumber(r[1])
    if delta ~= 0 then
      for i = 2, 4 do
        if r[i] and redis.call('EXISTS', r[i]) == 1 then
          if redis.call('INCRBY', r[i], delta) < 0 then redis.call('SET', r[i], 0, 'KEEPTTL') end
        end
      end
    end
  end
  redis.call('DEL', resv)
elseif has_usage and total > 0 then
  for i = 6, 8 do
    redis.call('INCRBY', KEYS[i], total)
    if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[i + 8]) end
  end
end
redis.call('HINCRBY', KEYS[4], ARGV[10], 1)
if has_usage then
  redis.call('HINCRBY', KEYS[4], ARGV[11], ARGV[3])
  redis.call('HINCRBY', KEYS[4], ARGV[12], ARGV[4])
  redis.call('HINCRBY', KEYS[4], ARGV[13], ARGV[5])
end
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('ZADD', KEYS[5], 0, ARGV[8])
redis.call('ZREMRANGEBYLEX', KEYS[5], '-', '(' .. ARGV[9])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

_CANCEL = _GIVE_BACK + "\nreturn give_back(KEYS[1])\n"

# KEYS: run, pending. ARGV: run id, now.
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'checked', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


def _limits_uri(url: str) -> str:
    """`limits` wants `async+redis://…`; it only parses the address, connections come from our pool."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return "async+" + url


def _num(value: float) -> str:
    return repr(float(value))


class RedisState:
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
        shared: dict[str, Any] = {"connection_pool": self._pool}  # one pool for our scripts and `limits`
        self._rpm_storage = RedisStorage(
            _limits_uri(url), implementation="redispy", key_prefix=f"{prefix}limits", **shared
        )
        self._rpm = MovingWindowRateLimiter(self._rpm_storage)
        self._rpm_items: dict[int, PerMinute] = {}
        script = self._redis.register_script
        self._claim = script(_CLAIM)
        self._owner = script(_OWNER)
        self._acquire = script(_ACQUIRE)
        self._reserve = script(_RESERVE)
        self._bind = script(_BIND)
        self._settle = script(_SETTLE)
        self._cancel = script(_CANCEL)
        self._touch = script(_TOUCH)

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
    async def owner(self, thread_id: str) -> str | None:
        async with self._call():
            found = await self._owner(
                keys=[self._key("own:t", thread_id), self._key("own:t:idx")],
                args=[self._ownership_ttl_s, self._max_owned],
            )
        return found if isinstance(found, str) else None

    async def claim(self, tenant: str, thread_id: str | None, run_id: str | None = None) -> None:
        keys: list[str] = []
        if thread_id is not None:
            keys += [self._key("own:t", thread_id), self._key("own:t:idx")]
        if run_id is not None:
            keys += [self._key("own:r", run_id), self._key("own:r:idx")]
        if keys:
            async with self._call():
                await self._claim(keys=keys, args=[tenant, self._ownership_ttl_s, self._max_owned])

    # Requests per minute.
    async def hit_requests(self, key: str, per_minute: int) -> Verdict:
        item = self._rpm_items.get(per_minute)
        if item is None:
            item = self._rpm_items[per_minute] = PerMinute(per_minute)
        async with self._call():
            ok = await self._rpm.hit(item, key)
            stats = await self._rpm.get_window_stats(item, key)
        return window_of(per_minute, stats.reset_time, stats.remaining, ok)

    # Concurrency leases.
    async def acquire(self, key: str, lease: str, limit: int, ttl_s: float) -> Verdict:
        async with self._call():
            ok, remaining, wait_ms = await self._acquire(
                keys=[self._key("lease", key)], args=[lease, limit, max(1, math.ceil(ttl_s * 1000))]
            )
        if ok:
            return Verdict(True, Window(limit, max(0, int(remaining)), 0.0))
        wait = max(0.0, int(wait_ms) / 1000)
        return Verdict(False, Window(limit, 0, wait), lease_limit_name(key), min(wait, LEASE_RETRY_AFTER_S))

    async def release(self, key: str, lease: str) -> None:
        async with self._call():
            await self._redis.zrem(self._key("lease", key), lease)

    # Tokens.
    async def reserve(self, reservation: str, tenant: str, amount: int, limits: TokenLimits, now: float) -> Verdict:
        buckets = token_buckets(tenant, now)
        async with self._call():
            ok, refused, used_minute = await self._reserve(
                keys=[self._key("resv", reservation), *(self._prefix + b.key for b in buckets)],
                args=[
                    max(0, amount),
                    *(-1 if limit is None else limit for limit in limit_values(limits)),
                    *(b.ttl_s for b in buckets),
                    PENDING_TTL_S,
                    tenant,
                ],
            )
        return token_verdict(buckets, limits, int(used_minute), None if ok else int(refused) - 1)

    async def bind(self, reservation: str, run: PendingRun) -> None:
        async with self._call():
            await self._bind(
                keys=[
                    self._key("resv", reservation),
                    self._key("run", run.run_id),
                    self._key("pending"),
                    self._key("settled", run.run_id),
                ],
                args=[
                    run.run_id,
                    run.thread_id,
                    run.tenant,
                    _num(run.created_at),
                    _num(run.checked_at),
                    PENDING_TTL_S,
                    reservation,
                    _num(run.checked_at - PENDING_TTL_S),
                ],
            )

    async def settle(self, run_id: str, tenant: str, model: str, usage: Usage | None, now: float) -> bool:
        day = utc_day(now)
        buckets = token_buckets(tenant, now)
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
                    *(json.dumps([tenant, model, metric]) for metric in _METRICS),
                    *(b.ttl_s for b in buckets),
                    self._key("resv", ""),
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
                        pipe.hmget(self._key("run", run_id), "thread", "tenant", "created", "checked")
                    found: list[list[str | None]] = await pipe.execute()
                gone = []
                for run_id, (thread, tenant, created, checked) in zip(ids, found, strict=True):
                    if thread is None or tenant is None or created is None or checked is None:
                        gone.append(run_id)  # its hash expired: given up on
                    else:
                        runs.append(PendingRun(run_id, thread, tenant, float(created), float(checked)))
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
        counts: dict[tuple[str, str, str], dict[str, int]] = {}
        for day, table in zip(days, tables, strict=True):
            for field, value in table.items():
                try:
                    row_tenant, model, metric = json.loads(field)
                except (ValueError, TypeError):
                    continue
                if tenant is None or row_tenant == tenant:
                    counts.setdefault((day, row_tenant, model), {})[metric] = int(value)
        return [
            UsageRow(row_tenant, model, day, *(values.get(metric, 0) for metric in _METRICS))
            for (day, row_tenant, model), values in sorted(counts.items(), key=lambda item: item[0])
        ]

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pool.aclose()

    # Not in the protocol: for health checks.
    async def ping(self) -> bool:
        async with self._call():
            return bool(await self._redis.ping())
