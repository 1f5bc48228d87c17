"""The Assistants pass-through: the client's call goes to an Assistants-compatible upstream as is.

Same method, path and query below the configured base URL (which may carry a prefix), hygienic
headers, the upstream credential; the body is never re-encoded.
"""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import UpstreamConfig
from gateway.errors import upstream_failure
from gateway.http.upstream import outgoing_headers, send
from gateway.state import StateStore
from gateway.upstreams import Call

_FORWARDED = ("OpenAI-Beta", "OpenAI-Organization", "OpenAI-Project")  # the client's, on a side GET made for it


class AssistantsUpstream:
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
        return outgoing_headers(incoming, request_id, authorization)

    async def forward(self, call: Call) -> aiohttp.ClientResponse:
        if isinstance(call.body, bytes):
            call.headers.popall("Content-Length", None)  # aiohttp sets it from the bytes actually sent
        return await send(call.session, call.method, self.url(call.raw_path, call.query), call.headers, call.body, self._timeout)

    async def fetch(
        self,
        session: aiohttp.ClientSession,
        api_path: str,
        authorization: str | None,
        *,
        request_id: str | None = None,
        client_headers: CIMultiDictProxy[str] | None = None,
        state: StateStore | None = None,
        tenant: str | None = None,
    ) -> tuple[int, bytes, str]:
        headers = CIMultiDict({"OpenAI-Beta": "assistants=v2"})
        if client_headers is not None:
            headers.update((name, client_headers[name]) for name in _FORWARDED if name in client_headers)
        if authorization:
            headers["Authorization"] = authorization
        if request_id:
            headers["X-Request-ID"] = request_id
        response = await send(session, "GET", self.url(api_path), headers, None, self._timeout)
        async with response:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise upstream_failure(exc, self._timeout) from None
        return response.status, body, response.headers.get("Content-Type", "application/json")
