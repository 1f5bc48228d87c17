"""The HTTP server the gateway runs on: aiohttp's, except for what it says about requests it cannot parse.

A request aiohttp's parser refuses (LF-only line endings, obs-folded or misspelt headers, a bad
request line, Content-Length with chunked, ...) never reaches the application, so no middleware
answers it. aiohttp answers it itself in `RequestHandler.handle_error`: a plain-text 400 quoting the
offending bytes (an `Authorization` header, key and all) and a logged traceback that quotes them
again. Here the same refusal is OpenAI's error envelope with an `X-Request-ID`, and one log line
naming the kind of error, never the bytes.

aiohttp has no public hook for this (aio-libs/aiohttp#3287): the response is built by
`RequestHandler.handle_error`, the handler is made by `Server.__call__` (the protocol factory) and the
server by the runner's `_make_server`. So each gets the smallest subclass that swaps in the next,
and nothing of aiohttp is patched: every other answer, and every other server in the process (the
simulator, a test's), is aiohttp's own. `GatewayRunner` is what serves the gateway everywhere.
"""

from __future__ import annotations

from http import HTTPStatus

import structlog
from aiohttp import web

from gateway.errors import error_body
from gateway.ids import request_id

log = structlog.get_logger("gateway.http")

UNPARSABLE_CODE = "invalid_http"


class EnvelopeRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, but the errors it answers itself leave in OpenAI's envelope."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # aiohttp's text for the client: it quotes the request, so unused
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # (as aiohttp does) an answer has begun: only closing is left
            raise ConnectionError("the response had already started")
        rid = request_id()
        kind = type(exc).__name__ if exc is not None else None
        if status >= 500:  # the gateway's own failure: its traceback is for whoever fixes it
            log.error("http_error", status=status, kind=kind, request_id=rid, exc_info=exc)
        else:  # a client's malformed bytes; the exception's text quotes them, so only its kind is logged
            log.info("http_unparsable", status=status, kind=kind, request_id=rid, remote=request.remote)
        response = web.Response(
            status=status, body=_envelope(status, kind), content_type="application/json", headers={"X-Request-ID": rid}
        )
        response.force_close()  # the parser has lost its place in the stream: nothing after can be trusted
        return response


def _envelope(status: int, kind: str | None) -> bytes:
    if status < 500:
        return error_body(
            f"The request is not valid HTTP/1.1 and was not read ({kind}).",
            "invalid_request_error",
            code=UNPARSABLE_CODE,
        )
    return error_body(f"The gateway could not answer this request ({HTTPStatus(status).phrase}).", "server_error")


class EnvelopeServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return EnvelopeRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `EnvelopeRequestHandler`s."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the app; aiohttp's Server, read for what it was given
        return EnvelopeServer(made.request_handler, request_factory=made.request_factory, **self._kwargs)
