"""The simulator application: route wiring, and what every request goes through first (recording,
credentials, the beta header, fault injection, OpenAI's response headers)."""

from __future__ import annotations

import contextlib
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from . import conversations, resources, responses_api, runs
from .faults import FAULT, FAULT_HEADER, RETRY_AFTER_HEADER, Fault, FaultKind, http_fault, parse_fault
from .objects import request_id
from .recordings import load_recordings
from .responses import SimulatorError
from .settings import SimulatorSettings
from .state import SIMULATOR_STATE, RecordedRequest, SimulatorState, state_of
from .streams import abort_connection, stall

__all__ = ["SIMULATOR_STATE", "SimulatorSettings", "build_simulator_app"]

OPENAI_VERSION = "2020-10-01"
_STARTED = web.RequestKey("started", float)
RATE_LIMIT_REQUESTS, RATE_LIMIT_TOKENS = 5000, 800_000  # per minute, as a tier-2 account's
_MINUTE_REQUESTS = web.AppKey("minute_requests", dict[int, int])
# Searched, not anchored: the app may be mounted under a prefix (`add_subapp("/openai/", ...)`).
_BETA_PATHS = re.compile(r"/v1/(?:assistants|threads)(?:/|$)")
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username. You can obtain an API key "
    "from https://platform.openai.com/account/api-keys."
)
_NO_BETA = (
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by setting "
    "the header 'OpenAI-Beta: assistants=v2'."
)


def build_simulator_app(settings: SimulatorSettings | None = None) -> web.Application:
    settings = settings or SimulatorSettings()
    app = web.Application(middlewares=[_simulate], client_max_size=settings.max_request_bytes)
    app[SIMULATOR_STATE] = SimulatorState(settings, load_recordings())
    # Runs first: `POST /v1/threads/runs` must not be taken for an update of thread "runs".
    app.add_routes(runs.routes)
    app.add_routes(resources.routes)
    # The Responses + Conversations API, for the gateway's Assistants facade (`upstream.protocol: responses`).
    app.add_routes(conversations.routes)
    app.add_routes(responses_api.routes)
    app[_MINUTE_REQUESTS] = {}
    app.on_response_prepare.append(_stamp_headers)
    app.on_shutdown.append(_release_hung_requests)
    return app


@web.middleware
async def _simulate(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[_STARTED] = time.monotonic()
    state = state_of(request)
    try:
        fault = await _admit(request, state)
        if fault is not None and fault.kind is FaultKind.HANG:
            return await _hang(request, state)
        return await handler(request)
    except SimulatorError as error:
        return error.to_response()
    except web.HTTPException as error:
        # Unknown routes, bodies over the size limit ...: still answered in OpenAI's envelope.
        if error.status in (404, 405):
            return SimulatorError(404, f"Invalid URL ({request.method} {request.path})").to_response()
        return SimulatorError(error.status, error.reason).to_response()


async def _admit(request: web.Request, state: SimulatorState) -> Fault | None:
    """Record the request, check its credentials, and read the fault it asks for."""
    body = await request.read()
    state.record(RecordedRequest(request.method, request.path, request.query_string, request.headers, body))
    _check_credentials(request)
    fault = parse_fault(request.headers.get(FAULT_HEADER), state.settings.fault_after_events)
    if fault is None:
        return None
    request[FAULT] = fault
    if fault.kind is FaultKind.HTTP:
        raise http_fault(fault, request.headers.get(RETRY_AFTER_HEADER), state.settings.retry_after_s)
    return fault


def _check_credentials(request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SimulatorError(401, _NO_KEY)
    if _BETA_PATHS.search(request.path) and "assistants=v2" not in request.headers.get("OpenAI-Beta", ""):
        raise SimulatorError(400, _NO_BETA, code="invalid_beta")


async def _hang(request: web.Request, state: SimulatorState) -> web.StreamResponse:
    """Never answer: hold the request until the client gives up or the app shuts down."""
    with contextlib.suppress(ConnectionResetError):
        await stall(request, state)
    abort_connection(request)
    return web.Response()  # reaches no one: the connection is gone


async def _stamp_headers(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(_STARTED, time.monotonic())
    response.headers["x-request-id"] = request_id()
    response.headers["openai-version"] = OPENAI_VERSION
    response.headers["openai-organization"] = "user-simulator"
    response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
    if request.method == "POST" and "x-ratelimit-limit-requests" not in response.headers:
        # The account's own limits, as OpenAI reports them on every call: this minute's requests count down.
        minute = int(time.time() // 60)
        counts = request.app[_MINUTE_REQUESTS]
        counts[minute] = counts.get(minute, 0) + 1
        for old in [m for m in counts if m < minute]:
            del counts[old]
        response.headers.update({
            "x-ratelimit-limit-requests": str(RATE_LIMIT_REQUESTS),
            "x-ratelimit-remaining-requests": str(max(0, RATE_LIMIT_REQUESTS - counts[minute])),
            "x-ratelimit-reset-requests": f"{60 - int(time.time()) % 60}s",
            "x-ratelimit-limit-tokens": str(RATE_LIMIT_TOKENS),
            "x-ratelimit-remaining-tokens": str(RATE_LIMIT_TOKENS),
            "x-ratelimit-reset-tokens": "0s",
        })  # fmt: skip


async def _release_hung_requests(app: web.Application) -> None:
    app[SIMULATOR_STATE].stopping.set()
