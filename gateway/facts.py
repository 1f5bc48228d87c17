"""Facts the policy needs but the body does not carry: the assistant's own model.

Fetched through the upstream with the caller's upstream credential and cached per tenant with a
TTL (see `Runtime.assistant_models`). If the upstream refuses (say, 404 for an unknown assistant)
its answer goes back to the client as is, exactly as the run call itself would have been answered.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .auth import Caller
from .errors import UpstreamAnswer, UpstreamUnavailable
from .runtime import Runtime

_FORWARDED = ("OpenAI-Beta", "OpenAI-Organization", "OpenAI-Project")


async def assistant_model(
    request: web.Request,
    session: aiohttp.ClientSession,
    runtime: Runtime,
    caller: Caller,
    request_id: str,
    assistant_id: str,
) -> str | None:
    key = (caller.tenant, assistant_id)
    cached = runtime.assistant_models.get(key)
    if cached is not None:
        return cached
    upstream = runtime.upstream
    headers = CIMultiDict((name, request.headers[name]) for name in _FORWARDED if name in request.headers)
    if caller.upstream_authorization:
        headers["Authorization"] = caller.upstream_authorization
    headers["X-Request-ID"] = request_id
    url = upstream.url(f"/assistants/{quote(assistant_id, safe='')}")  # an id is never a path
    response = await upstream.send(session, "GET", url, headers)
    async with response:
        try:
            body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            raise UpstreamUnavailable("The upstream broke off while describing the assistant.") from None
    if response.status != 200:
        raise UpstreamAnswer(response.status, body, response.headers.get("Content-Type", "application/json"))
    try:
        model = orjson.loads(body).get("model")
    except (orjson.JSONDecodeError, AttributeError):
        model = None
    if isinstance(model, str):
        runtime.assistant_models[key] = model
        return model
    return None
