"""Cross-cutting concerns: request ids, the error envelope, one spelling per path, and authentication
of /v1 calls.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from gateway import ids
from gateway.config import Config
from gateway.errors import (
    ExpectationFailed,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotCanonical,
    NotFound,
    PayloadTooLarge,
    error_body,
)
from gateway.http.paths import canonical_path
from gateway.keys import CALLER, REQUEST_ID, REQUEST_RUNTIME, RUNTIME
from gateway.pipeline.forward import API_ROOT
from gateway.pipeline.passthrough import allowed

log = structlog.get_logger("gateway")


_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep a sane caller-chosen X-Request-ID, else mint one; every response carries it."""
    rid = request[REQUEST_ID] = _request_id_for(request)
    bound = structlog.contextvars.bind_contextvars(request_id=rid)  # (bound_contextvars also copies the context)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    if not response.prepared:
        response.headers["X-Request-ID"] = rid
    return response


def _request_id_for(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _CLIENT_REQUEST_ID.fullmatch(given) else ids.request_id()


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything the gateway refuses leaves in OpenAI's error envelope, never as a traceback."""
    try:
        return await handler(request)
    except GatewayError as exc:
        return exc.to_response()
    except web.HTTPNotFound:
        return NotFound(
            f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos."
        ).to_response()
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(
            f"Method {request.method} is not allowed for {request.path} (allowed: {allowed}).",
            headers={"Allow": allowed},
        ).to_response()
    except web.HTTPRequestEntityTooLarge:
        return PayloadTooLarge("The request body is too large.").to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.Response(
            status=exc.status,
            body=error_body(exc.reason, "invalid_request_error" if exc.status < 500 else "server_error"),
            content_type="application/json",
        )
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return web.Response(
            status=500,
            body=error_body("The gateway hit an internal error.", "server_error", code="internal_error"),
            content_type="application/json",
        )


@web.middleware
async def one_spelling(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path is served in its canonical spelling only (`gateway/http/paths.py`): another spelling of an
    API path the gateway serves is redirected to it (308), any other is 404; nothing is checked or
    forwarded under a spelling the upstream would read differently."""
    raw = request.rel_url.raw_path
    canonical = canonical_path(raw)
    if canonical == raw:
        return await handler(request)
    prefixes = request[REQUEST_RUNTIME].config.upstream.allowed_paths
    if canonical is None or not canonical.startswith(API_ROOT + "/") or not allowed(canonical.removeprefix(API_ROOT), prefixes):
        raise NotFound(f"Unknown request URL: {request.method} {raw}. Please check the URL for typos.")
    query = request.rel_url.raw_query_string
    location = f"{canonical}?{query}" if query else canonical
    raise NotCanonical(f"{raw} is served as {canonical}: send the request there.", headers={"Location": location})


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The authenticate stage for every API call; the gateway's own endpoints are open. Header values
    that are not UTF-8 are refused first, on every route.

    The request takes the runtime current now and keeps it, whatever a reload swaps in meanwhile.
    """
    check_headers(request)
    runtime = request[REQUEST_RUNTIME] = request.app[RUNTIME].current
    if request.path.startswith("/v1/"):
        request[CALLER] = runtime.authenticator.authenticate(request.headers.get("Authorization"))
    return await handler(request)


def check_headers(request: web.Request) -> None:
    """Refuse header values that are not UTF-8: they could be neither compared nor sent upstream.

    aiohttp's parser already refuses CR, LF and NUL in values (no header injection upstream); bytes
    that do not decode reach the app as lone surrogates.
    """
    for name, value in request.headers.items():
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                # (names are tokens: the parser lets only ASCII through)
                raise InvalidRequest(f"The value of the {name} header is not valid UTF-8.", code="invalid_header") from None


def expect_continue(max_bytes: Callable[[Config], int]) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """A route's `Expect: 100-continue` handler: the client is told to send its body only once its key
    is known and the size it announces fits (`max_bytes` of the current config); else it gets the
    refusal at once, and never sends the body (aiohttp's default says "continue" to anyone)."""

    async def handle(request: web.Request) -> web.StreamResponse | None:
        runtime = request.app[RUNTIME].current
        try:
            if request.headers.get("Expect", "").lower() != "100-continue":
                raise ExpectationFailed("Only 'Expect: 100-continue' is understood.")
            if request.path.startswith("/v1/"):
                runtime.authenticator.authenticate(request.headers.get("Authorization"))
            limit = max_bytes(runtime.config)
            if request.content_length is not None and request.content_length > limit:
                raise PayloadTooLarge(f"The request body exceeds the gateway's limit of {limit} bytes.")
        except GatewayError as exc:
            refused = exc.to_response()  # (answered before the middlewares: it carries its own request id)
            refused.headers["X-Request-ID"] = _request_id_for(request)
            return refused
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    return handle
