"""Lists of ids the facade keeps in the state store (a tenant's assistants, a thread's runs).

A list is one record rewritten whole: two replicas adding to the same list at the same instant can
drop an entry from it (never the object it names). Fine for what it indexes; a set type in the state
store would close the gap.
"""

from __future__ import annotations

import orjson

from gateway.state import StateStore


async def ids(state: StateStore, kind: str, key: str) -> list[str]:
    raw = await state.get_record(kind, key)
    found = orjson.loads(raw) if raw else []
    return [i for i in found if isinstance(i, str)]


async def update_ids(
    state: StateStore, kind: str, key: str, ttl_s: float, *, add: str | None = None, remove: str | None = None
) -> None:
    """`add` at the end (once), `remove` wherever it is."""
    known = await ids(state, kind, key)
    if add in known and remove is None:
        return
    await state.put_record(kind, key, orjson.dumps([i for i in known if i not in (remove, add)] + ([add] if add else [])), ttl_s)
