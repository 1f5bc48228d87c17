"""The pooled upstream client: URL mapping, header hygiene, timeouts, error mapping.

One `ClientSession` per upstream for the app's lifetime (see `upstream_ctx`). Bodies are never
decompressed or re-encoded on the way through: what the upstream sends is what the client gets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .config import UpstreamConfig
from .errors import UpstreamTimeout, UpstreamUnavailable

# RFC 9110 §7.6.1 hop-by-hop fields, plus Host, which belongs to the next hop's URL.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
    )
)  # fmt: skip


def strip_hop_by_hop(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, including any the `Connection` header names.

    (Copy, then delete: multidict does both in C, a filtered rebuild costs four times as much.)"""
    out = CIMultiDict(headers)
    named = (token.strip() for value in headers.getall("Connection", ()) for token in value.split(","))
    for name in (*HOP_BY_HOP, *named):
        out.popall(name, None)  # every value of it
    return out


class Upstream:
    """Where and how to send upstream, from one config; the pooled session is the app's."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._base = str(config.base_url).rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s
        )

    def url(self, api_path: str, query_string: str = "") -> URL:
        """`api_path` is below the API root (`/threads/runs`), still percent-encoded; the base may carry a prefix."""
        return URL(f"{self._base}{api_path}?{query_string}" if query_string else f"{self._base}{api_path}", encoded=True)

    def headers(self, incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None) -> CIMultiDict[str]:
        headers = strip_hop_by_hop(incoming)
        headers.popall("Authorization", None)
        if authorization:
            headers["Authorization"] = authorization
        headers["X-Request-ID"] = request_id
        return headers

    async def send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: CIMultiDict[str],
        body: bytes | AsyncIterator[bytes] | None = None,
    ) -> aiohttp.ClientResponse:
        """The response is open: the caller reads it and must `release()` or `close()` it."""
        try:
            return await session.request(
                method, url, headers=headers, data=body, allow_redirects=False, timeout=self._timeout
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream did not answer within {self.config.read_timeout_s:g}s."
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(f"The upstream could not be reached: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"


def make_session(config: UpstreamConfig) -> aiohttp.ClientSession:
    """The pool lives as long as the app; its size is fixed at startup (timeouts follow reloads)."""
    connector = aiohttp.TCPConnector(limit=config.pool_size, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        # No default Accept-Encoding/User-Agent: the upstream must see the client's, and only those.
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )
