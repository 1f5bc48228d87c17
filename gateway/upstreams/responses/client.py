"""The facade's calls to the Responses + Conversations API: JSON in, JSON (or an open stream) out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from gateway.config import UpstreamConfig
from gateway.domain import json_object
from gateway.errors import upstream_failure
from gateway.http.upstream import send
from gateway.upstreams import Call


class ResponsesClient:
    def __init__(self, config: UpstreamConfig) -> None:
        self._base = str(config.base_url).rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout_s, sock_read=config.read_timeout_s)

    async def open(
        self, call: Call, method: str, path: str, payload: Mapping[str, Any] | None = None, query: str = ""
    ) -> aiohttp.ClientResponse:
        """The upstream's response, open (the caller reads and releases it), with the caller's credential."""
        headers = CIMultiDict(call.headers)
        body = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            body = orjson.dumps(payload)
        url = URL(f"{self._base}{path}?{query}" if query else f"{self._base}{path}", encoded=True)
        return await send(call.session, method, url, headers, body, self.timeout)

    async def json(
        self, call: Call, method: str, path: str, payload: Mapping[str, Any] | None = None, query: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """Status and JSON object of one call (an error's body is OpenAI's envelope, passed on as is)."""
        response = await self.open(call, method, path, payload, query)
        async with response:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise upstream_failure(exc, self.timeout) from None
        return response.status, dict(json_object(raw))
