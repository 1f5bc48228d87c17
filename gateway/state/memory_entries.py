"""What `MemoryState` keeps per object: the records behind its dicts."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import LRUCache

from gateway.state import PendingRun


@dataclass(slots=True)
class Held:
    """A reservation the memory state holds: its amounts and the buckets they were taken from."""

    tenant: str
    amount: int
    keys: tuple[str, str, str]
    expires: float  # on the store's clock (the latest `now` seen)
    usd: int = 0  # µUSD reserved in each of `usd_keys` (none: reserved without a spend)
    usd_keys: tuple[str, ...] = ()


class Owners(LRUCache[str, str]):
    """Object → owning tenant, least recently used dropped first; remembers that it ever dropped one."""

    forgot = False

    def popitem(self) -> tuple[str, str]:
        self.forgot = True
        return super().popitem()


@dataclass(slots=True)
class Pending:
    run: PendingRun
    reservation: str | None
    expires: float
