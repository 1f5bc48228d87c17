"""The pooled upstream HTTP client: header hygiene, timeouts, transport errors → 502/504.

One `ClientSession` for the app's lifetime (see `make_session`). Bodies are never decompressed or
re-encoded on the way through: what the upstream sends is what the client gets. Hooks on the
session's requests (client spans) come in as aiohttp `TraceConfig`s, so callers have one code path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import UpstreamConfig
from gateway.errors import upstream_failure

# RFC 9110 §7.6.1 hop-by-hop fields, plus Host, which belongs to the next hop's URL.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
    )
)  # fmt: skip

Body = bytes | AsyncIterator[bytes] | None


class ReplyContent(Protocol):
    async def readany(self) -> bytes: ...

    def iter_any(self) -> AsyncIterator[bytes]: ...


class Reply(Protocol):
    """An upstream's answer as the relay reads it: an `aiohttp.ClientResponse`, or one an adapter made
    (the Responses facade answers in Assistants events it translated)."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def content_type(self) -> str: ...

    @property
    def content_length(self) -> int | None: ...

    @property
    def content(self) -> ReplyContent: ...

    def release(self) -> Any: ...


def strip_hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, including any the `Connection` header names.

    (Copy, then delete: multidict does both in C, a filtered rebuild costs four times as much.)"""
    out = CIMultiDict(headers)
    named = (token.strip() for value in headers.getall("Connection", ()) for token in value.split(","))
    for name in (*HOP_BY_HOP, *named):
        out.popall(name, None)  # every value of it
    return out


# What a caller must not choose when the gateway sends its own credential: which OpenAI organisation
# and project the shared key bills. And proxy headers an upstream might trust, whoever's key it is.
_CREDENTIAL_SCOPE = ("OpenAI-Organization", "OpenAI-Project")
_PROXY = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "X-Original-URL",
          "X-Rewrite-URL")  # fmt: skip


def outgoing_headers(
    incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None, drop: tuple[str, ...] = ()
) -> CIMultiDict[str]:
    """The client's headers as they go upstream: no hop-by-hop or proxy fields, no `drop`, the
    upstream credential (and, unless it is the caller's own key, none of the caller's org/project)."""
    headers = strip_hop_by_hop(incoming)
    callers_own_key = authorization is not None and incoming.get("Authorization") == authorization
    for name in (*_PROXY, *drop, "Authorization", *(() if callers_own_key else _CREDENTIAL_SCOPE)):
        headers.popall(name, None)
    if authorization:
        headers["Authorization"] = authorization
    headers["X-Request-ID"] = request_id
    return headers


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    headers: CIMultiDict[str],
    body: Body,
    timeout: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    """The response is open: the caller reads it and must `release()` or `close()` it."""
    try:
        return await session.request(method, url, headers=headers, data=body, allow_redirects=False, timeout=timeout)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise upstream_failure(exc, timeout) from None


def make_session(config: UpstreamConfig, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> aiohttp.ClientSession:
    """The pool lives as long as the app; its size is fixed at startup (timeouts follow reloads)."""
    connector = aiohttp.TCPConnector(limit=config.pool_size, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        # No default Accept-Encoding/User-Agent: the upstream must see the client's, and only those.
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
        trace_configs=list(trace_configs) or None,
    )
