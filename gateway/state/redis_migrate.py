"""A Redis written before the keys were hash-tagged, moved to today's layout (`python -m gateway state migrate`).

Before, every key was `{prefix}<kind>:…`; now a tenant's keys are `{prefix}{tenant}:<kind>:…` and the
ownership index's `{prefix}{own}:…` (see `redis_scripts`). What the gateway needs from the old keys
is moved, each once (RENAME keeps its TTL): the ownership claims (else every object made before
would read as unknown, and be refused), the runs waiting to be settled with their reservations, the
settled markers (else a run polled again would be counted again), and the token and USD counters of
the tenants in the config (else their budgets would start again from nothing). Short-lived keys are
left to expire: request windows and leases (minutes). The old shared ledger stays where it is:
`RedisState.usage` reads it. Run it again and it finds nothing more to move.

Best run with the gateways stopped: a call made on the new build before its tenant's keys moved
sees that tenant's counters as they are under the new names (what was moved is added to them).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import cast

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from gateway.state.redis_scripts import PREFIX

_COUNTERS = ("tpm", "tpd", "tpmo", "usdd", "usdmo")
_RESERVATION_KEYS = ("m", "d", "mo")  # and u1..u<un>: its buckets' full names


@dataclass
class Moved:
    claims: int = 0
    runs: int = 0
    reservations: int = 0
    settled: int = 0
    counters: int = 0
    left: int = 0  # keys whose tenant is unknown (not in the config, or a run nobody owns): not moved

    def summary(self) -> dict[str, int]:
        return asdict(self)


async def migrate(url: str, tenants: Collection[str], prefix: str = PREFIX) -> Moved:
    redis = Redis.from_url(url, decode_responses=True)
    try:
        layout = _Layout(redis, prefix, tenants)
        await layout.claims()  # first: a settled marker's tenant is its run's owner
        await layout.runs()
        await layout.reservations()
        await layout.settled()
        await layout.counters()
        return layout.moved
    finally:
        await redis.aclose()


class _Layout:
    def __init__(self, redis: Redis, prefix: str, tenants: Collection[str]) -> None:
        self._redis, self._prefix, self._tenants = redis, prefix, tenants
        self._own = prefix + "{own}:"
        self.moved = Moved()

    def _of(self, tenant: str) -> str:
        return f"{self._prefix}{{{tenant or '-'}}}:"

    async def _old(self, kind: str) -> list[str]:
        """The old keys `{prefix}{kind}:…`."""
        pattern = re.sub(r"([\\*?\[\]])", r"\\\1", self._prefix + kind) + ":*"
        return [key async for key in self._redis.scan_iter(match=pattern, count=1000)]

    async def claims(self) -> None:
        for kind in ("t", "r"):
            index = f"{self._prefix}own:{kind}:idx"
            for key in await self._old(f"own:{kind}"):
                if key != index:
                    await self._redis.rename(key, self._own + key.removeprefix(self._prefix + "own:"))
                    self.moved.claims += 1
            used = cast(list[tuple[str, float]], await self._redis.zrange(index, 0, -1, withscores=True))
            if used:
                renamed = {self._own + key.removeprefix(self._prefix + "own:"): score for key, score in used}
                await self._redis.zadd(f"{self._own}{kind}:idx", renamed)
                await self._redis.delete(index)
        if await self._redis.exists(self._prefix + "own:forgot"):
            await self._redis.rename(self._prefix + "own:forgot", self._own + "forgot")

    async def runs(self) -> None:
        pending = self._prefix + "pending"
        for run_id, checked in cast(list[tuple[str, float]], await self._redis.zrange(pending, 0, -1, withscores=True)):
            tenant = cast(str | None, await self._redis.hget(self._prefix + "run:" + run_id, "tenant"))
            if tenant is None:
                continue  # its hash expired: given up on, as the reconciler would
            of = self._of(tenant)
            await self._redis.rename(self._prefix + "run:" + run_id, of + "run:" + run_id)
            await self._redis.zadd(of + "pending", {run_id: checked})
            await self._redis.sadd(self._prefix + "tenants", tenant)
            self.moved.runs += 1
        await self._redis.delete(pending)

    async def reservations(self) -> None:
        for key in await self._old("resv"):
            fields = cast(dict[str, str], await self._redis.hgetall(key))
            if "tenant" not in fields:
                continue
            of = self._of(fields["tenant"])
            buckets = [*_RESERVATION_KEYS, *(f"u{i}" for i in range(1, int(fields.get("un", 0)) + 1))]
            renamed: dict[FieldT, EncodableT] = {
                name: of + fields[name].removeprefix(self._prefix) for name in buckets if name in fields
            }
            if renamed:
                await self._redis.hset(key, mapping=renamed)
            await self._redis.rename(key, of + key.removeprefix(self._prefix))
            self.moved.reservations += 1

    async def settled(self) -> None:
        for key in await self._old("settled"):
            run_id = key.removeprefix(self._prefix + "settled:")
            tenant = cast(str | None, await self._redis.get(self._own + "r:" + run_id))
            if tenant is None:
                self.moved.left += 1
                continue
            await self._redis.rename(key, self._of(tenant) + key.removeprefix(self._prefix))
            self.moved.settled += 1

    async def counters(self) -> None:
        for kind in _COUNTERS:
            for key in await self._old(kind):
                owner = key.removeprefix(f"{self._prefix}{kind}:").rpartition(":")[0]  # tenant, or tenant:key
                tenant = self._tenant_of(owner)
                if tenant is None:
                    self.moved.left += 1
                    continue
                await self._add_to(key, self._of(tenant) + key.removeprefix(self._prefix))
                self.moved.counters += 1

    def _tenant_of(self, owner: str) -> str | None:
        found = [tenant for tenant in self._tenants if owner == tenant or owner.startswith(tenant + ":")]
        return max(found, key=len) if found else None

    async def _add_to(self, old: str, new: str) -> None:
        """The old counter under its new name; added to what the new name counted already, if anything."""
        if not await self._redis.renamenx(old, new):
            await self._redis.incrby(new, int(cast(str | None, await self._redis.get(old)) or 0))
            await self._redis.delete(old)
