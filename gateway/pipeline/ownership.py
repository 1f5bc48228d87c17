"""The ownership stage: no tenant reaches another tenant's objects (the objects: `pipeline/tenancy.py`).

The gateway claims an object for the tenant whose call created it (from the answer: first claim
wins). A call that names an object — in its path or anywhere in its body — is refused with a 404,
as if the object did not exist, unless the caller owns it; an object the gateway never saw created
is the caller's only under `unknown_objects: allow`, and one whose claim was dropped (a bounded
memory, expiry) is nobody's. The claims live in the shared state (`gateway.state`); objects made
before the gateway can be declared a tenant's in its config (`owns`), which no claim overrides.
"""

from __future__ import annotations

import structlog

from gateway.domain import json_object
from gateway.errors import NotFound
from gateway.pipeline.call import RunCall
from gateway.pipeline.tenancy import ASSISTANT, THREAD, Kind, Ref, named_in_path, referenced_in
from gateway.runtime import Runtime
from gateway.schema.requests import RunRoute
from gateway.state import StateStore, StateUnavailable
from gateway.state.resilient import ResilientState

log = structlog.get_logger("gateway.ownership")


def owned_by(owner: str | None, tenant: str, unknown_allowed: bool) -> bool:
    return owner == tenant or (owner is None and unknown_allowed)


def guards(runtime: Runtime, kind: Kind) -> bool:
    """Whether the gateway keeps `kind` to its tenants: not without tenants (pass-through mode: one
    anonymous tenant), and not the facade's assistants (it keeps those itself, each tenant's own)."""
    if runtime.config.tenants is None:
        return False
    return not (kind is ASSISTANT and runtime.config.upstream.protocol == "responses")


async def owners_of(runtime: Runtime, state: StateStore, object_ids: list[str]) -> list[str | None]:
    """Each object's owner: the tenant whose config declares it (`tenants.<name>.owns`), else its claim."""
    declared = runtime.declared_owners
    claimed = [object_id for object_id in object_ids if object_id not in declared]
    found = dict(zip(claimed, await state.owners(claimed), strict=True)) if claimed else {}
    return [declared.get(object_id) or found[object_id] for object_id in object_ids]


async def check_owned(runtime: Runtime, state: StateStore, tenant: str, refs: list[Ref]) -> None:
    """404 for the first object named that is not the caller's."""
    refs = [ref for ref in refs if guards(runtime, ref.kind)]
    if not refs:
        return
    unknown_allowed = runtime.unknown_objects_allowed(tenant)
    for ref, owner in zip(refs, await owners_of(runtime, state, [ref.object_id for ref in refs]), strict=True):
        if not owned_by(owner, tenant, unknown_allowed):
            raise NotFound(f"No {ref.kind.name} found with id '{ref.object_id}'.")


def refs_of(api_path: str, data: object) -> list[Ref]:
    """What a call names: the object in its path, then those its body refers to."""
    named = named_in_path(api_path)
    return ([named] if named is not None else []) + referenced_in(data)


async def owner_recordable(state: StateStore) -> None:
    """Under `on_failure: fail_closed`, nothing that creates an ownable object goes upstream unless its
    owner can be written: the shared state is asked first (down: 503 `state_unavailable`, nothing sent)."""
    if isinstance(state, ResilientState):
        await state.probe()


async def claim_created(state: StateStore, tenant: str, kind: Kind, body: bytes) -> None:
    """Read on the side of a creating call's answer: the new object is the caller's."""
    created = json_object(body)
    object_id = created.get("id")
    if created.get("object") == kind.object and isinstance(object_id, str):
        try:
            await state.claim(tenant, object_id)
        except StateUnavailable:  # fail_open: the claim is lost, and the object reads as unknown
            log.warning("state_unavailable", step="claim", object=kind.object, object_id=object_id)


async def own_objects(call: RunCall) -> None:
    """The ownership stage of a run call: the thread, assistant, files and vector stores it names
    must be the caller's; what the run will create (a run, a thread) must be recordable as the caller's."""
    if call.runtime.config.tenants is None:
        return  # pass-through mode: one anonymous tenant (and no walk of the body on every run call)
    thread_id = call.request.match_info.get("thread_id")
    refs = ([Ref(THREAD, thread_id)] if thread_id is not None else []) + referenced_in(call.data)
    await check_owned(call.runtime, call.state, call.tenant, refs)
    if call.route is not RunRoute.SUBMIT_TOOL_OUTPUTS:
        await owner_recordable(call.state)
