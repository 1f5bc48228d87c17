"""The interface the forward stage calls: one implementation per upstream protocol.

`assistants` (the pass-through) forwards the Assistants API to an Assistants-compatible upstream;
`responses` (the facade) serves the Assistants API on the Responses + Conversations API. Like
envoyproxy/ai-gateway's `translator/`, an adapter owns everything protocol-specific, so the
pipeline in front of it — validation, policy, limits, ownership, telemetry — stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import Config
from gateway.http.upstream import Body, Reply
from gateway.state import StateStore


@dataclass(frozen=True, slots=True)
class Call:
    """A client's call on its way upstream: `raw_path` is below the API root, still percent-encoded."""

    session: aiohttp.ClientSession
    method: str
    raw_path: str
    query: str
    headers: CIMultiDict[str]  # hygienic already: see `UpstreamAdapter.headers`
    body: Body
    tenant: str
    state: StateStore  # where an adapter keeps what it must remember (the facade's runs)


class UpstreamAdapter(Protocol):
    def headers(self, incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None) -> CIMultiDict[str]:
        """What goes upstream with a forwarded call: the client's end-to-end headers, our credential and id."""
        ...

    async def forward(self, call: Call) -> Reply:
        """The upstream's answer to `call`, open: the relay reads it, then releases it."""
        ...

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
        """A side GET of the gateway's own (an assistant's model, a run's usage): status, body, content type.

        With `client_headers`, the client's OpenAI-Beta/-Organization/-Project go along; `state` and
        `tenant` are for adapters that answer from what they keep (the facade)."""
        ...


def adapter_for(config: Config) -> UpstreamAdapter:
    if config.upstream.protocol == "responses":
        from gateway.upstreams.responses.adapter import ResponsesFacade

        return ResponsesFacade(config)
    from gateway.upstreams.assistants import AssistantsUpstream

    return AssistantsUpstream(config.upstream)
