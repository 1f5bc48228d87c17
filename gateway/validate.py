"""The parse + validate stage: a run call's body → raw bytes (forwarded as is) and a typed request."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from aiohttp import web

from .errors import InvalidRequest, PayloadTooLarge
from .openai_types import RunRequest, RunRoute, validate_run_request


async def read_run_request(
    request: web.Request, route: RunRoute, max_bytes: int, unknown_fields: Literal["reject", "pass"]
) -> tuple[bytes, dict[str, Any], RunRequest]:
    """The raw bytes (forwarded unless the policy changes them), the parsed body, the typed request."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(request.content_length, max_bytes)
    if request.content_type != "application/json":
        raise InvalidRequest(
            f"Unsupported Content-Type {request.content_type!r}: send the body as application/json.",
            code="unsupported_content_type",
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, max_bytes) from None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            f"your HTTP library correctly. The OpenAI API expects a JSON payload.) Detail: {exc}",
            code="invalid_json",
        ) from None
    return body, data, validate_run_request(route, data, unknown_fields=unknown_fields)


def _too_large(size: int | None, max_bytes: int) -> PayloadTooLarge:
    got = f" (got {size} bytes)" if size is not None else ""
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {max_bytes} bytes{got}.")
