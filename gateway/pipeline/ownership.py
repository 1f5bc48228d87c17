"""The ownership stage: which tenant owns which thread and run, so no tenant reaches another's.

The gateway claims a thread or run for the tenant whose call created it (from the response or the
stream), first claim wins. Another tenant asking for it gets the upstream's own 404, as if it did
not exist. The claims live in the shared state (`gateway.state`), in memory or in Redis.
"""

from __future__ import annotations

from gateway.errors import NotFound
from gateway.pipeline.call import RunCall
from gateway.runtime import Runtime
from gateway.schema.requests import RunRoute
from gateway.state import StateStore
from gateway.state.resilient import ResilientState


def thread_id_of(api_path: str) -> str | None:
    """`/threads/{id}/…` → id; `/threads` and `/threads/runs` (create thread and run) name none."""
    parts = api_path.split("/", 3)
    if len(parts) >= 3 and parts[1] == "threads" and parts[2] not in ("", "runs"):
        return parts[2]
    return None


async def check_thread_access(store: StateStore, tenant: str, thread_id: str, unknown_allowed: bool) -> None:
    owner = await store.owner(thread_id)
    if owner == tenant or (owner is None and unknown_allowed):
        return
    raise NotFound(f"No thread found with id '{thread_id}'.")


async def guard_thread(runtime: Runtime, state: StateStore, tenant: str, thread_id: str) -> None:
    """Another tenant's thread answers 404, as if it did not exist."""
    if runtime.config.tenants is None:
        return  # pass-through mode: one anonymous tenant, nothing to separate
    await check_thread_access(state, tenant, thread_id, runtime.unknown_threads_allowed(tenant))


async def owner_recordable(state: StateStore) -> None:
    """Under `on_failure: fail_closed`, nothing that creates an ownable object goes upstream unless its
    owner can be written: the shared state is asked first (down: 503 `state_unavailable`, nothing sent)."""
    if isinstance(state, ResilientState):
        await state.probe()


async def own_thread(call: RunCall) -> None:
    """The ownership stage of a run call: the thread must be the caller's; what the run will create
    (a run, a thread) must be recordable as the caller's."""
    thread_id = call.request.match_info.get("thread_id")
    if thread_id is not None:
        await guard_thread(call.runtime, call.state, call.tenant, thread_id)
    if call.runtime.config.tenants is not None and call.route is not RunRoute.SUBMIT_TOOL_OUTPUTS:
        await owner_recordable(call.state)
