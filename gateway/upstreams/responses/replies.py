"""Replies the facade makes itself, read by the relay exactly like an upstream's `ClientResponse`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.errors import error_body
from gateway.upstreams.responses.objects import page


class _Chunks:
    """`readany()` / `iter_any()` over an async generator of byte chunks (b"" at the end)."""

    def __init__(self, chunks: AsyncGenerator[bytes]) -> None:
        self._chunks = chunks

    async def readany(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""

    async def iter_any(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        """Close the generator now, from synchronous code: its `finally` (releasing the upstream
        response) awaits nothing, so `aclose()` completes at its first step."""
        closing = self._chunks.aclose()
        try:
            closing.send(None)
        except StopIteration:
            return
        except RuntimeError:  # running right now: it is being closed by whoever runs it
            closing.close()
            return
        closing.close()  # a `finally` that awaited: let the generator's own finalizer finish it


async def once(body: bytes) -> AsyncGenerator[bytes]:
    yield body


class _Reply:
    def __init__(self, status: int, content_type: str, chunks: AsyncGenerator[bytes], length: int | None) -> None:
        self.status = status
        self.reason: str | None = None
        self.content_type = content_type
        self.content_length = length
        self.headers = CIMultiDictProxy(CIMultiDict({"Content-Type": content_type}))
        self.content = _Chunks(chunks)

    def release(self) -> None:
        """The relay is done (or the client left): stop the translation, which releases the upstream."""
        self.content.close()


class JsonReply(_Reply):
    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        raw = orjson.dumps(body)
        super().__init__(status, "application/json", once(raw), len(raw))

    @classmethod
    def error(cls, status: int, message: str, code: str | None, *, param: str | None = None) -> JsonReply:
        return cls(status, orjson.loads(error_body(message, "invalid_request_error", param, code)))


class StreamReply(_Reply):
    def __init__(self, events: AsyncGenerator[bytes]) -> None:
        super().__init__(200, "text/event-stream", events, None)


def paged(items: Sequence[Mapping[str, Any]], query: Mapping[str, str]) -> JsonReply:
    """A page of `items` (oldest first) by the list contract, or the 400 for a bad `limit`/`order`."""
    limit, order = query.get("limit", "20"), query.get("order", "desc")
    if not limit.isdigit() or not 1 <= int(limit) <= 100 or order not in ("asc", "desc"):
        return JsonReply.error(400, "limit must be 1 to 100 and order asc or desc.", "invalid_value", param="limit")
    return JsonReply(200, page(items, order, query.get("after"), int(limit)))


def deleted(object_id: str, kind: str) -> JsonReply:
    return JsonReply(200, {"id": object_id, "object": f"{kind}.deleted", "deleted": True})
