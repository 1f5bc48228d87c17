"""The relay stage: upstream response → client, byte for byte; SSE is teed to the run tracker.

Bytes go to the client first and are parsed after, so observation never delays the relay; each
`write` awaits the client's drain, so a slow client slows the upstream read (backpressure) instead
of piling chunks up in memory.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Protocol

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from gateway.domain import CLIENT_CLOSED, COUNTED_STATUS, SSEEvent
from gateway.errors import UpstreamAnswer, UpstreamUnavailable, error_body
from gateway.http.drain import DrainDeadline, StreamCut
from gateway.http.finish import to_the_end
from gateway.http.sse import SSEParser
from gateway.http.upstream import Reply, strip_hop_by_hop

_UPSTREAM_FAILURES = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_TAIL_S = 1.0  # how long an upstream's body may stay open after its `[DONE]` before it is cut
_FIND_RUN_S, _FIND_RUN_BYTES = 10.0, 1 << 20  # how long, and how far, a left stream is read for its run id
DRAIN_CUT = "The gateway is shutting down; the stream was cut."  # what a stream open at the drain deadline ends with

JsonObserver = Callable[[bytes], Awaitable[None]]


class RunTee(Protocol):
    """Who hears a run call's response on the side (the pipeline's tracker); never raises into the relay."""

    def on_response(self, status: int, streamed: bool, headers: Mapping[str, str]) -> None: ...

    def on_first_byte(self) -> None: ...

    async def on_events(self, events: Iterable[SSEEvent]) -> None: ...

    async def on_json(self, body: bytes) -> None: ...

    def on_broken(self, reason: str) -> None: ...

    def on_client_gone(self) -> None: ...

    @property
    def awaiting_run_id(self) -> bool:
        """The stream is to name a run it has not named yet (one the upstream goes on running)."""
        ...

    def on_cut(self, reason: str) -> None: ...

    @property
    def finished(self) -> bool: ...

    def finish(self) -> None: ...


def response_headers(upstream: Reply, request_id: str) -> CIMultiDict[str]:
    headers = strip_hop_by_hop(upstream.headers)
    headers.popall("Content-Length", None)  # set again from what is actually sent
    upstream_id = headers.popall("X-Request-ID", None)
    if upstream_id:
        headers["X-Upstream-Request-ID"] = upstream_id[0]
    headers["X-Request-ID"] = request_id
    return headers


def is_event_stream(upstream: Reply) -> bool:
    return upstream.content_type == "text/event-stream"


async def relay(
    request: web.Request,
    upstream: Reply,
    request_id: str,
    observe_json: JsonObserver | None = None,
    max_json_bytes: int = 0,
) -> web.StreamResponse:
    """Pass-through: the response goes on as it arrives; a JSON body may be read whole to observe."""
    headers = response_headers(upstream, request_id)
    try:
        if upstream.status >= 400 and upstream.content_type == "application/json":
            return await _scrubbed_error(upstream, headers, max_json_bytes)
        if observe_json is not None and upstream.content_type == "application/json":
            return await _observed_body(upstream, headers, observe_json, max_json_bytes)
        return await _pass_body(request, upstream, headers)
    finally:
        upstream.release()


async def relay_run(
    request: web.Request,
    upstream: Reply,
    request_id: str,
    tracker: RunTee,
    max_json_bytes: int,
    drain: DrainDeadline,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """A run call's response: streams are teed, run objects read, both told to the tracker; a stream
    still open at the drain deadline is ended with an `error` event."""
    headers = response_headers(upstream, request_id)
    headers.update(extra_headers or {})
    streamed = is_event_stream(upstream)
    tracker.on_response(upstream.status, streamed, upstream.headers)
    try:
        if streamed:
            return await _tee_events(request, upstream, headers, tracker, drain)
        if upstream.status >= 400 and upstream.content_type == "application/json":
            return await _scrubbed_error(upstream, headers, max_json_bytes)
        if upstream.content_type == "application/json":
            return await _observed_body(upstream, headers, tracker.on_json, max_json_bytes)
        return await _pass_body(request, upstream, headers)
    finally:
        upstream.release()  # back to the pool if fully read, closed (upstream told) if not
        if not tracker.finished:  # (a stream relayed whole finished at its `[DONE]`)
            tracker.finish()


async def _tee_events(
    request: web.Request,
    upstream: Reply,
    headers: CIMultiDict[str],
    tracker: RunTee,
    drain: DrainDeadline,
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    tee = _EventTee(request, response, upstream, tracker, drain)
    try:
        complete = await tee.pump()
        transport = request.transport
        if transport is not None and not transport.is_closing():
            # The answer is whole (to its `[DONE]`, or ended with an error event) and was written to an
            # open connection: a client that leaves from here on, during the call's bookkeeping, had it all.
            request.setdefault(COUNTED_STATUS, response.status)
        if complete:
            tracker.finish()  # the call is complete: what the upstream still holds open is not the client's
            await _write_eof(response)
            await _read_to_end(upstream)
    except (asyncio.CancelledError, ConnectionResetError) as gone:
        # The client went away: aiohttp cancelled the handler (handler_cancellation), or a write found
        # the connection closing first. Before its answer was whole, or just after (a complete call).
        if COUNTED_STATUS not in request:
            request[COUNTED_STATUS] = CLIENT_CLOSED
            tracker.on_client_gone()
            # In a task of its own: this one's cancellation would cut it short (and its timeout with it).
            await asyncio.shield(tee.read_until_run_id())
        if isinstance(gone, asyncio.CancelledError):
            raise
    return response


class _EventTee:
    """One run stream: each chunk goes to the client, then its events to the tracker."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, upstream: Reply, tracker: RunTee, drain: DrainDeadline
    ) -> None:
        self._request, self._response, self._upstream, self._tracker, self._drain = request, response, upstream, tracker, drain
        self._parser = SSEParser()
        self._unheard: list[SSEEvent] = []  # read from the upstream, not yet told (their write may have failed)

    async def pump(self) -> bool:
        """Relay events until `[DONE]` (True: the answer is whole) or the stream ends otherwise.
        Raises ConnectionResetError (or is cancelled) when the client is gone."""
        response, tracker, first = self._response, self._tracker, True
        while True:
            try:
                chunk = await self._drain.read(self._upstream.content)
            except StreamCut:
                tracker.on_cut(DRAIN_CUT)
                error = {"message": DRAIN_CUT, "type": "server_error", "param": None, "code": "gateway_draining"}
                await _end_with_error(response, self._parser, error)
                return False
            except _UPSTREAM_FAILURES as exc:
                await _end_broken_stream(response, self._parser, tracker, exc)
                return False
            if not chunk:
                break
            if first:
                tracker.on_first_byte()
                first = False
            self._unheard = self._parser.feed(chunk)  # (parsing awaits nothing: the bytes are not delayed)
            await response.write(chunk)
            done = any(event.event == "done" for event in self._unheard)
            if done:  # the answer is whole: a client that leaves from here on made a complete call
                self._request[COUNTED_STATUS] = response.status
            await self._tell()
            if done:
                return True
        await _write_eof(response)
        return False

    async def read_until_run_id(self) -> None:
        """A client gone before the stream named its run (after `thread.created`, say) leaves a run the
        upstream goes on running and billing: the stream is read on, bounded, until the run's id
        arrives, so the run is bound to its reservation and the reconciler settles it."""
        await self._tell()
        read = 0
        try:
            async with asyncio.timeout(_FIND_RUN_S):
                while self._tracker.awaiting_run_id and read < _FIND_RUN_BYTES:
                    chunk = await self._upstream.content.readany()
                    if not chunk:
                        return
                    read += len(chunk)
                    self._unheard = self._parser.feed(chunk)
                    await self._tell()
        except (TimeoutError, *_UPSTREAM_FAILURES):
            pass  # not named in time: no run to hand on (its reservation is given back)

    async def _tell(self) -> None:
        events, self._unheard = self._unheard, []
        await self._tracker.on_events(events)


async def _read_to_end(upstream: Reply) -> None:
    """What an upstream sends after `[DONE]` (nothing, then the end of its body), read so its
    connection goes back to the pool; not waited for long: the client has its answer already."""
    try:
        async with asyncio.timeout(_TAIL_S):
            while await upstream.content.readany():
                pass
    except (TimeoutError, *_UPSTREAM_FAILURES):
        pass  # relay_run() closes the connection instead


async def _end_broken_stream(
    response: web.StreamResponse, parser: SSEParser, tracker: RunTee, exc: BaseException
) -> None:
    reason = "upstream stream timed out" if isinstance(exc, asyncio.TimeoutError) else "upstream stream broke"
    tracker.on_broken(reason)
    error = {"message": f"The {reason} before the run finished.", "type": "upstream_error", "param": None,
             "code": "upstream_stream_broken"}  # fmt: skip
    await _end_with_error(response, parser, error)


async def _end_with_error(response: web.StreamResponse, parser: SSEParser, error: Mapping[str, object]) -> None:
    """End the client's stream cleanly, with an `error` event the SDK raises as `openai.APIError`."""
    # A half-sent event is closed first, so the error event cannot merge into it.
    prefix = b"\n\n" if parser.pending else b""
    try:
        await response.write(prefix + b"event: error\ndata: " + orjson.dumps({"error": error}) + b"\n\n")
    except ConnectionResetError:
        return
    await _write_eof(response)


async def _write_eof(response: web.StreamResponse) -> None:
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass


async def _observed_body(
    upstream: Reply, headers: CIMultiDict[str], observe: JsonObserver, max_bytes: int
) -> web.Response:
    """Small JSON bodies (run and thread objects) are read whole so they can be observed."""
    body = await _read_bounded(upstream, max_bytes)
    decoded = _decoded(body, upstream.headers.get("Content-Encoding", "identity"), max_bytes)
    if decoded is not None:
        await to_the_end(observe(decoded))  # claims and settlements: a client that leaves does not cut them short
    return web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)


# An OpenAI key as an upstream error names it (`Incorrect API key provided: sk-upstr*****abcd`):
# the shared key's prefix and tail are not the tenant's to see.
_KEY = re.compile(rb"\b(sk|sess|rk)-[A-Za-z0-9_*\-]{4,}")


def refusal(status: int, body: bytes, content_type: str) -> UpstreamAnswer:
    """The upstream's refusal of a call the gateway made itself (an assistant's look-up), as the client
    gets it: in the upstream's words if they are OpenAI's envelope (any key masked), else in ours."""
    try:
        words = orjson.loads(body) if content_type == "application/json" else None
    except orjson.JSONDecodeError:
        words = None
    if isinstance(words, dict) and isinstance(words.get("error"), dict):
        return UpstreamAnswer(status, _KEY.sub(rb"\1-***", body), content_type)
    ours = error_body(f"The upstream refused the request ({status}).", "upstream_error", code="upstream_error")
    return UpstreamAnswer(status, ours, "application/json")


async def _scrubbed_error(upstream: Reply, headers: CIMultiDict[str], max_bytes: int) -> web.Response:
    """An upstream error passes on in its own words, with any API key in them masked whole."""
    raw = await _read_bounded(upstream, max_bytes)
    body = _decoded(raw, upstream.headers.get("Content-Encoding", "identity"), max_bytes)
    if body is None:  # an encoding the gateway cannot read: it says so rather than pass unread words on
        body = error_body("The upstream refused the request.", "upstream_error", code="upstream_error")
    headers.popall("Content-Encoding", None)
    return web.Response(status=upstream.status, reason=upstream.reason, body=_KEY.sub(rb"\1-***", body), headers=headers)


async def _read_bounded(upstream: Reply, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := await upstream.content.readany():
            size += len(chunk)
            if size > max_bytes:
                raise UpstreamUnavailable(
                    f"The upstream response exceeds the gateway's limit of {max_bytes} bytes.",
                    code="upstream_response_too_large",
                )
            parts.append(chunk)
    except _UPSTREAM_FAILURES:
        raise UpstreamUnavailable("The upstream connection broke while sending its response.") from None
    return b"".join(parts)


async def read_json(upstream: Reply, max_bytes: int) -> bytes | None:
    """A JSON answer read whole (bounded) and decoded, for the gateway to read itself; None if its
    encoding is one the gateway cannot read. The caller releases `upstream`."""
    body = await _read_bounded(upstream, max_bytes)
    return _decoded(body, upstream.headers.get("Content-Encoding", "identity"), max_bytes)


def _decoded(body: bytes, encoding: str, max_bytes: int) -> bytes | None:
    """The body as the tracker needs it; the client still gets the encoded bytes."""
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        return None
    try:
        return zlib.decompressobj(wbits=47).decompress(body, max_bytes)  # 47: gzip or zlib header
    except zlib.error:
        return None


async def _pass_body(
    request: web.Request, upstream: Reply, headers: CIMultiDict[str]
) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if upstream.content_length is not None:
        response.content_length = upstream.content_length
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except ConnectionResetError:
        return response
    except _UPSTREAM_FAILURES:
        # Headers are gone already: cutting the connection is the only honest signal left.
        response.force_close()
        if request.transport is not None:
            request.transport.abort()
        return response
    await _write_eof(response)
    return response
