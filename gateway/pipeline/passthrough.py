"""Everything else the SDK calls under `/v1/` (threads, messages, runs polled, assistants, files,
vector stores): authenticated, kept to its tenant, forwarded with the body streaming both ways.

The objects a call names must be the caller's (`pipeline/ownership.py`), lists show only the caller's
(`pipeline/lists.py`). Answers worth reading are read on the side: a new object (its ownership is
claimed), runs polled, listed or cancelled (usage is settled from them, and runs that have ended
give their concurrency slots back).
"""

from __future__ import annotations

import re
from functools import partial

from aiohttp import web

from gateway.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge
from gateway.http.body import BodyStream
from gateway.http.relay import JsonObserver, relay
from gateway.keys import CALLER, RECORDER, REQUEST_ID, REQUEST_RUNTIME, STATE
from gateway.pipeline.admit import count_request
from gateway.pipeline.enforce import judge_assistant
from gateway.pipeline.forward import API_ROOT, forward
from gateway.pipeline.lists import owned_list
from gateway.pipeline.ownership import check_owned, claim_created, guards, owner_recordable, refs_of
from gateway.pipeline.settle import settle_polled
from gateway.pipeline.tenancy import ASSISTANT, collection_of, created_by, listed_by
from gateway.pipeline.validate import read_json_body
from gateway.state import NO_KEY

_RUNS = re.compile(r"^/threads/[^/]+/runs(/[^/]+)?$")  # a run polled, or a thread's runs listed
_CANCEL = re.compile(r"^/threads/[^/]+/runs/[^/]+/cancel$")
_ONE_ASSISTANT = re.compile(r"^/assistants/[^/]+$")
_API_METHODS = ("GET", "POST", "DELETE")  # all the API uses


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Everything else the SDK calls under /v1/, if its prefix is allowed; bodies stream through."""
    if request.method not in _API_METHODS:  # TRACE would echo credentials back; the API has no others
        allowed_methods = ", ".join(_API_METHODS)
        raise MethodNotAllowed(f"Method {request.method} is not allowed for {request.path} (allowed: {allowed_methods}).",
                               headers={"Allow": allowed_methods})  # fmt: skip
    runtime = request[REQUEST_RUNTIME]
    api_path = request.path.removeprefix(API_ROOT)
    if not allowed(api_path, runtime.config.upstream.allowed_paths):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos.")
    body: bytes | BodyStream | None = await _owned_call(request, api_path)
    listed = listed_by(request.method, api_path)
    if listed is not None and guards(runtime, listed):
        return await owned_list(request, listed)
    listen = runtime.config.listen
    size = request.content_length
    if size is not None and size > listen.max_upload_bytes:
        raise PayloadTooLarge(f"The request body exceeds the gateway's limit of {listen.max_upload_bytes} bytes.")
    if body is None and request.body_exists:
        body = BodyStream(request, listen.max_upload_bytes, listen.upload_idle_timeout_s)
    try:
        upstream_response = await forward(request, body)
    except GatewayError:
        if isinstance(body, BodyStream) and body.failure is not None:
            raise body.failure from None  # the client's fault (413, 408), not a broken upstream
        raise
    if request.method in ("POST", "DELETE") and _ONE_ASSISTANT.match(api_path):  # changed: judge it afresh
        runtime.assistant_facts.pop((request[CALLER].tenant, api_path.rsplit("/", 1)[1]), None)
    observe = _observer_for(request, api_path)
    return await relay(
        request, upstream_response, request[REQUEST_ID], observe, runtime.config.upstream.max_response_bytes
    )


async def _owned_call(request: web.Request, api_path: str) -> bytes | None:
    """The checks of a pass-through call: the objects its path and JSON body name are the caller's
    (404); an assistant's body meets the policy (403); a call that creates an object counts against
    the request rate (429) and is sent only if its owner can be recorded (503). The JSON body, read
    to check it, is what goes on."""
    runtime, state, caller = request[REQUEST_RUNTIME], request.app[STATE], request[CALLER]
    tenancy = runtime.config.tenants is not None
    policy = runtime.policy_for(caller.tenant)
    judged = request.method == "POST" and collection_of(api_path) is ASSISTANT and policy is not None
    if not (tenancy or judged):
        return None
    body, data = None, None
    if request.method == "POST" and request.body_exists and request.content_type != "multipart/form-data":
        listen = runtime.config.listen
        body, data = await read_json_body(request, listen.max_body_bytes, listen.body_timeout_s)
    if tenancy:
        await check_owned(runtime, state, caller.tenant, refs_of(api_path, data))
    if judged:
        judge_assistant(runtime, caller.tenant, data)
    if tenancy and created_by(request.method, api_path) is not None:
        limits = runtime.config.limits.for_tenant(caller.tenant)
        await count_request(state, limits, caller.tenant, caller.fingerprint or NO_KEY)
        await owner_recordable(state)
    return body


def _observer_for(request: web.Request, api_path: str) -> JsonObserver | None:
    """Pass-through answers worth reading: a new object (ownership), runs polled, listed or cancelled
    (usage, and the slots of runs that have ended)."""
    state, tenant = request.app[STATE], request[CALLER].tenant
    created = created_by(request.method, api_path)
    if created is not None and guards(request[REQUEST_RUNTIME], created):
        return partial(claim_created, state, tenant, created)
    if (request.method == "GET" and _RUNS.match(api_path)) or (request.method == "POST" and _CANCEL.match(api_path)):
        runtime = request[REQUEST_RUNTIME]
        counts_runs = runtime.config.limits.for_tenant(tenant).counts_runs
        key = request[CALLER].fingerprint or NO_KEY
        return partial(settle_polled, state, request.app[RECORDER], runtime.pricing, tenant, key, counts_runs)
    return None


def allowed(api_path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `api_path` (below /v1) is under one of the pass-through prefixes, with no dot segments."""
    if "/../" in api_path + "/" or "/./" in api_path + "/":
        return False
    return any(api_path == prefix or api_path.startswith(prefix + "/") for prefix in prefixes)
