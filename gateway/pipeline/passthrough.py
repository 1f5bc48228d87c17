"""Everything else the SDK calls under `/v1/` (threads, messages, runs polled, assistants, files,
vector stores): authenticated, kept to its tenant, forwarded with the body streaming both ways.

Answers worth reading are read on the side: a new thread (ownership is claimed), runs polled, listed
or cancelled (usage is settled from them, and runs that have ended give their concurrency slots back).
"""

from __future__ import annotations

import re
from functools import partial

import structlog
from aiohttp import web

from gateway.domain import json_object
from gateway.errors import GatewayError, MethodNotAllowed, NotFound, PayloadTooLarge
from gateway.http.body import BodyStream
from gateway.http.relay import JsonObserver, relay
from gateway.keys import CALLER, REQUEST_ID, REQUEST_RUNTIME, STATE
from gateway.pipeline.forward import API_ROOT, forward
from gateway.pipeline.ownership import guard_thread, owner_recordable, thread_id_of
from gateway.pipeline.settle import settle_polled
from gateway.state import StateStore, StateUnavailable

log = structlog.get_logger("gateway.passthrough")


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
    config = request[REQUEST_RUNTIME].config
    api_path = request.path.removeprefix(API_ROOT)
    if not allowed(api_path, config.upstream.allowed_paths):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos.")
    thread_id = thread_id_of(api_path)
    if thread_id is not None:
        await guard_thread(request[REQUEST_RUNTIME], request.app[STATE], request[CALLER].tenant, thread_id)
    if request.method == "POST" and api_path == "/threads" and config.tenants is not None:
        await owner_recordable(request.app[STATE])  # a thread is claimed by whoever creates it
    listen = config.listen
    size = request.content_length
    if size is not None and size > listen.max_upload_bytes:
        raise PayloadTooLarge(f"The request body exceeds the gateway's limit of {listen.max_upload_bytes} bytes.")
    body = BodyStream(request, listen.max_upload_bytes, listen.upload_idle_timeout_s) if request.body_exists else None
    try:
        upstream_response = await forward(request, body)
    except GatewayError:
        if body is not None and body.failure is not None:
            raise body.failure from None  # the client's fault (413, 408), not a broken upstream
        raise
    if request.method in ("POST", "DELETE") and _ONE_ASSISTANT.match(api_path):  # changed: judge it afresh
        request[REQUEST_RUNTIME].assistant_models.pop((request[CALLER].tenant, api_path.rsplit("/", 1)[1]), None)
    observe = _observer_for(request, api_path)
    return await relay(request, upstream_response, request[REQUEST_ID], observe, config.upstream.max_response_bytes)


def _observer_for(request: web.Request, api_path: str) -> JsonObserver | None:
    """Pass-through answers worth reading: a new thread (ownership), runs polled, listed or cancelled
    (usage, and the slots of runs that have ended)."""
    state, tenant = request.app[STATE], request[CALLER].tenant
    if request.method == "POST" and api_path == "/threads":
        return partial(_claim_thread, state, tenant)
    if (request.method == "GET" and _RUNS.match(api_path)) or (request.method == "POST" and _CANCEL.match(api_path)):
        counts_runs = request[REQUEST_RUNTIME].config.limits.for_tenant(tenant).counts_runs
        return partial(settle_polled, state, tenant, counts_runs)
    return None


async def _claim_thread(state: StateStore, tenant: str, body: bytes) -> None:
    thread = json_object(body)
    if thread.get("object") == "thread" and isinstance(thread.get("id"), str):
        try:
            await state.claim(tenant, thread["id"])
        except StateUnavailable:
            log.warning("state_unavailable", step="claim_thread", thread_id=thread["id"])


def allowed(api_path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `api_path` (below /v1) is under one of the pass-through prefixes, with no dot segments."""
    if "/../" in api_path + "/" or "/./" in api_path + "/":
        return False
    return any(api_path == prefix or api_path.startswith(prefix + "/") for prefix in prefixes)
