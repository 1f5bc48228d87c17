"""Bounds on reading a client's body: pass-through bodies stream through `BodyStream`, cut at the
size limit (413) or when the client stalls for `listen.upload_idle_timeout_s` (408)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import GatewayError, PayloadTooLarge, RequestTimeout

_CHUNK = 64 * 1024


class BodyStream:
    """A pass-through body as it streams in: cut at `max_bytes` (413) or when the client stalls (408).

    aiohttp reports a failure inside a streamed body as a broken upstream connection; `failure`
    keeps the client's own fault so the caller can answer with it instead.
    """

    def __init__(self, request: web.Request, max_bytes: int, idle_timeout_s: float) -> None:
        self._content = request.content
        self._max_bytes = max_bytes
        self._idle_timeout_s = idle_timeout_s
        self._size = 0
        self.failure: GatewayError | None = None

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            async with asyncio.timeout(self._idle_timeout_s):
                chunk = await self._content.read(_CHUNK)
        except TimeoutError:
            self.failure = RequestTimeout(f"The request body stalled for more than {self._idle_timeout_s:g}s.")
            raise self.failure from None
        if not chunk:
            raise StopAsyncIteration
        self._size += len(chunk)
        if self._size > self._max_bytes:
            self.failure = too_large(None, self._max_bytes)
            raise self.failure
        return chunk


def too_large(size: int | None, max_bytes: int) -> PayloadTooLarge:
    got = f" (got {size} bytes)" if size is not None else ""
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {max_bytes} bytes{got}.")
