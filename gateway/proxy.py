"""The request's path, one stage per call, for run calls and for the rest of `/v1/`.

    authenticate (middleware) → validate → forward → relay / tee → record

Policy and admission slot in between validate and forward as their issues land.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from .context import CALLER, CONFIG, RECORDER, REQUEST_ID, UPSTREAM
from .errors import GatewayError, NotFound, PayloadTooLarge
from .openai_types import RunRoute
from .relay import relay, relay_run
from .runs import RunRecord, RunTracker
from .validate import read_run_request

API_ROOT = "/v1"
_CHUNK = 64 * 1024


def run_call(route: RunRoute) -> Handler:
    """Create-thread-and-run and its siblings: validated, then forwarded and teed."""

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        config = request.app[CONFIG]
        body, _run_request = await read_run_request(
            request, route, config.listen.max_body_bytes, config.upstream.unknown_fields
        )
        record = RunRecord(request[REQUEST_ID], route.value, request[CALLER].tenant, started)
        tracker = RunTracker(record, request.app[RECORDER])
        try:
            upstream_response = await forward(request, body)
        except GatewayError as exc:
            record.error = exc.message
            tracker.finish()
            raise
        return await relay_run(
            request, upstream_response, record.request_id, tracker, config.upstream.max_response_bytes
        )

    return handle


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Everything else the SDK calls under /v1/, if its prefix is allowed; bodies stream through."""
    config = request.app[CONFIG]
    api_path = request.path.removeprefix(API_ROOT)
    if not _allowed(api_path, config.upstream.allowed_paths):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}. Please check the URL for typos.")
    size = request.content_length
    if size is not None and size > config.listen.max_upload_bytes:
        raise PayloadTooLarge(f"The request body exceeds the gateway's limit of {config.listen.max_upload_bytes} bytes.")
    body = _stream_body(request) if request.body_exists else None
    return await relay(request, await forward(request, body), request[REQUEST_ID])


async def forward(request: web.Request, body: bytes | AsyncIterator[bytes] | None) -> aiohttp.ClientResponse:
    """The forward stage: same method, path and query, hygienic headers, the upstream credential."""
    upstream = request.app[UPSTREAM]
    raw_path = request.rel_url.raw_path.removeprefix(API_ROOT)
    url = URL(upstream.url(raw_path, request.rel_url.raw_query_string), encoded=True)
    headers = upstream.headers(request.headers, request[REQUEST_ID], request[CALLER].upstream_authorization)
    if isinstance(body, bytes):
        headers.popall("Content-Length", None)  # aiohttp sets it from the bytes actually sent
    return await upstream.send(request.method, url, headers, body)


def _allowed(api_path: str, prefixes: tuple[str, ...]) -> bool:
    if "/../" in api_path + "/" or "/./" in api_path + "/":
        return False
    return any(api_path == prefix or api_path.startswith(prefix + "/") for prefix in prefixes)


async def _stream_body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(_CHUNK):
        yield chunk
