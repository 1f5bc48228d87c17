"""The interface the forward stage calls: one implementation per upstream protocol.

`assistants` (today's pass-through) forwards the Assistants API to an Assistants-compatible
upstream; the Responses facade (the Assistants API served on Responses + Conversations) is the
second implementation. Like envoyproxy/ai-gateway's `translator/`, an adapter owns everything
protocol-specific, so the pipeline in front of it stays the same.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import UpstreamConfig
from gateway.http.upstream import Body


class UpstreamAdapter(Protocol):
    def headers(self, incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None) -> CIMultiDict[str]:
        """What goes upstream with a forwarded call: the client's end-to-end headers, our credential and id."""
        ...

    async def forward(
        self, session: aiohttp.ClientSession, method: str, raw_path: str, query: str, headers: CIMultiDict[str], body: Body
    ) -> aiohttp.ClientResponse:
        """A client's call (`raw_path` below the API root, still percent-encoded); the response is open."""
        ...

    async def fetch(
        self,
        session: aiohttp.ClientSession,
        api_path: str,
        authorization: str | None,
        *,
        request_id: str | None = None,
        client_headers: CIMultiDictProxy[str] | None = None,
    ) -> tuple[int, bytes, str]:
        """A side GET of the gateway's own (an assistant's model, a run's usage): status, body, content type.

        With `client_headers`, the client's OpenAI-Beta/-Organization/-Project go along."""
        ...


def adapter_for(config: UpstreamConfig) -> UpstreamAdapter:
    from gateway.upstreams.assistants import AssistantsUpstream

    return AssistantsUpstream(config)
