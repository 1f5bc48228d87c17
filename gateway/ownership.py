"""Which tenant owns which thread and run, so no tenant reaches another's.

The gateway claims a thread or run for the tenant whose call created it (from the response or the
stream), first claim wins. Another tenant asking for it gets the upstream's own 404, as if it did
not exist. The claims live in the shared state (`gateway.state`), in memory or in Redis.
"""

from __future__ import annotations

from typing import Protocol

from .errors import NotFound


class OwnershipStore(Protocol):
    async def owner(self, thread_id: str) -> str | None: ...

    async def claim(self, tenant: str, thread_id: str | None, run_id: str | None = None) -> None: ...


def thread_id_of(api_path: str) -> str | None:
    """`/threads/{id}/…` → id; `/threads` and `/threads/runs` (create thread and run) name none."""
    parts = api_path.split("/", 3)
    if len(parts) >= 3 and parts[1] == "threads" and parts[2] not in ("", "runs"):
        return parts[2]
    return None


async def check_thread_access(store: OwnershipStore, tenant: str, thread_id: str, unknown_allowed: bool) -> None:
    owner = await store.owner(thread_id)
    if owner == tenant or (owner is None and unknown_allowed):
        return
    raise NotFound(f"No thread found with id '{thread_id}'.")
