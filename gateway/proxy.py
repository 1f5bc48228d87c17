"""The request's path, one stage per call, for run calls and for the rest of `/v1/`.

    authenticate (middleware) → validate → ownership → policy → forward → relay / tee → record

Admission (limits, token reservation) slots in between policy and forward with its issue.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any
from functools import partial

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from .context import AUDIT, CALLER, RECORDER, REQUEST_ID, REQUEST_RUNTIME, SESSION, STATE, TRACE_ID
from .enforce import enforce
from .admit import admission
from .errors import GatewayError, NotFound, PayloadTooLarge, StateDown
from .openai_types import RunRequest, RunRoute
from .ownership import check_thread_access, thread_id_of
from .relay import JsonObserver, relay, relay_run
from .runs import RunRecord, RunTracker
from .telemetry.tracing import REQUEST_TRACE
from .settle import Settlement, settle_polled
from .state import StateStore, StateUnavailable
from .validate import BodyStream, read_run_request

log = structlog.get_logger("gateway.proxy")

API_ROOT = "/v1"
_RUNS = re.compile(r"^/threads/[^/]+/runs(/[^/]+)?$")  # a run polled, or a thread's runs listed


def run_call(route: RunRoute) -> Handler:
    """Create-thread-and-run and its siblings: validated, judged, admitted, then forwarded and teed."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started, started_ns = time.perf_counter(), time.time_ns()
        config = request[REQUEST_RUNTIME].config
        listen = config.listen
        body, data, run_request = await read_run_request(
            request, route, listen.max_body_bytes, config.upstream.unknown_fields, listen.body_timeout_s
        )
        if "thread_id" in request.match_info:
            await guard_thread(request, request.match_info["thread_id"])
        record = _new_record(request, route, started, started_ns)
        record.note_request(run_request, data)
        creates_run = route is not RunRoute.SUBMIT_TOOL_OUTPUTS
        settlement = Settlement(request.app[STATE], record.tenant, creates_run=creates_run)
        tracker = RunTracker(record, request.app[RECORDER], on_ids=settlement.on_ids)
        audit = request.app.get(AUDIT)
        if audit is not None:
            await audit.reserve(record)  # room for the run's two records, held until the call ends
        try:
            return await _judge_and_send(request, route, run_request, data, body, tracker, settlement)
        except BaseException as exc:  # a refusal, or the client gone: the outcome is recorded all the same
            if not tracker.finished:
                tracker.on_error(exc)
                tracker.finish()
            raise
        finally:
            if audit is not None:
                audit.release(record)
            await settlement.close(record)

    return handle


async def _judge_and_send(
    request: web.Request,
    route: RunRoute,
    run_request: RunRequest,
    data: dict[str, Any],
    body: bytes,
    tracker: RunTracker,
    settlement: Settlement,
) -> web.StreamResponse:
    """policy → admission → forward → relay, the part of a run call that may refuse it."""
    record = tracker.record
    try:
        body, reported = await enforce(request, route, run_request, data, body, record)
    finally:
        tracker.decided()
    async with admission(request, route, record, data.get("stream") is True, settlement.reservation) as ticket:
        tracker.on_forward()
        upstream_response = await forward(request, body)
        max_json = request[REQUEST_RUNTIME].config.upstream.max_response_bytes
        headers = {**reported, **ticket.headers()}
        return await relay_run(request, upstream_response, record.request_id, tracker, max_json, headers)


def _new_record(request: web.Request, route: RunRoute, started: float, started_ns: int) -> RunRecord:
    caller = request[CALLER]
    return RunRecord(
        request[REQUEST_ID],
        route.value,
        caller.tenant,
        started,
        started_ns,
        key_fingerprint=caller.fingerprint,
        client_address=request.remote,
        trace_id=request.get(TRACE_ID),
        policy=request[REQUEST_RUNTIME].config.policy_name_for(caller.tenant),
    )


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Everything else the SDK calls under /v1/, if its prefix is allowed; bodies stream through."""
    config = request[REQUEST_RUNTIME].config
    api_path = request.path.removeprefix(API_ROOT)
    if not _allowed(api_path, config.upstream.allowed_paths):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos.")
    thread_id = thread_id_of(api_path)
    if thread_id is not None:
        await guard_thread(request, thread_id)
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
    observe = _observer_for(request, api_path)
    return await relay(request, upstream_response, request[REQUEST_ID], observe, config.upstream.max_response_bytes)


def _observer_for(request: web.Request, api_path: str) -> JsonObserver | None:
    """Pass-through answers worth reading: a new thread (ownership), runs polled or listed (usage)."""
    state, tenant = request.app[STATE], request[CALLER].tenant
    if request.method == "POST" and api_path == "/threads":
        return partial(_claim_thread, state, tenant)
    if request.method == "GET" and _RUNS.match(api_path):
        return partial(settle_polled, state, tenant)
    return None


async def guard_thread(request: web.Request, thread_id: str) -> None:
    """The ownership stage: another tenant's thread answers 404, as if it did not exist."""
    runtime = request[REQUEST_RUNTIME]
    if runtime.config.tenants is None:
        return  # pass-through mode: one anonymous tenant, nothing to separate
    tenant = request[CALLER].tenant
    try:
        await check_thread_access(request.app[STATE], tenant, thread_id, runtime.unknown_threads_allowed(tenant))
    except StateUnavailable:
        raise StateDown("The gateway's shared state is unreachable; try again shortly.") from None


async def _claim_thread(state: StateStore, tenant: str, body: bytes) -> None:
    try:
        thread = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if isinstance(thread, dict) and thread.get("object") == "thread" and isinstance(thread.get("id"), str):
        try:
            await state.claim(tenant, thread["id"])
        except StateUnavailable:
            log.warning("state_unavailable", step="claim_thread", thread_id=thread["id"])


async def forward(request: web.Request, body: bytes | AsyncIterator[bytes] | None) -> aiohttp.ClientResponse:
    """The forward stage: same method, path and query, hygienic headers, the upstream credential."""
    upstream = request[REQUEST_RUNTIME].upstream
    url = upstream.url(request.rel_url.raw_path.removeprefix(API_ROOT), request.rel_url.raw_query_string)
    headers = upstream.headers(request.headers, request[REQUEST_ID], request[CALLER].upstream_authorization)
    if isinstance(body, bytes):
        headers.popall("Content-Length", None)  # aiohttp sets it from the bytes actually sent
    traced = request.get(REQUEST_TRACE)  # tracing on: a CLIENT span, whose traceparent goes upstream
    if traced is not None:
        return await traced.send(upstream, request.app[SESSION], request.method, url, headers, body)
    return await upstream.send(request.app[SESSION], request.method, url, headers, body)


def _allowed(api_path: str, prefixes: tuple[str, ...]) -> bool:
    if "/../" in api_path + "/" or "/./" in api_path + "/":
        return False
    return any(api_path == prefix or api_path.startswith(prefix + "/") for prefix in prefixes)
