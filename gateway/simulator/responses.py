"""JSON responses, OpenAI's error envelope and list pages, as the real API shapes them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
    "JSON. If you have trouble figuring out how to fix this, please contact us through our help "
    "center at help.openai.com.)"
)


class SimulatorError(Exception):
    """A refusal the simulated API answers with its error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def to_response(self) -> web.Response:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        # The envelope OpenAI sends; text from a hostile path may hold lone surrogates: escaped.
        body = orjson.dumps({"error": {k: v and v.encode("utf-8", "backslashreplace").decode() for k, v in error.items()}})
        return web.Response(status=self.status, body=body, content_type="application/json", headers=self.headers)


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> SimulatorError:
    return SimulatorError(400, message, param=param, code=code)


def not_found(kind: str, object_id: str) -> SimulatorError:
    # The wording of the real API for assistants, threads, runs, messages and steps.
    return SimulatorError(404, f"No {kind} found with id '{object_id}'.")


def json_response(payload: Any, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), content_type="application/json", headers=headers)


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(_BAD_JSON) from None
    if not isinstance(body, dict):
        raise bad_request(_BAD_JSON)
    return body


def require(body: Mapping[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise bad_request(f"Missing required parameter: '{key}'.", param=key, code="missing_required_parameter")
    return body[key]


# Each usage of the run or response reports this many of its prompt tokens as read from the cache.
CACHED_TOKENS_HEADER = "X-Simulator-Cached-Tokens"


def cached_tokens(request: web.Request) -> int | None:
    raw = request.headers.get(CACHED_TOKENS_HEADER)
    return None if raw is None else int(header_number(raw, CACHED_TOKENS_HEADER, "a number of tokens"))


def header_number(raw: str, header: str, unit: str) -> float:
    """A finite, non-negative number from a simulator control header."""
    try:
        number = float(raw)
    except ValueError:
        number = -1.0
    if not 0 <= number < math.inf:
        raise bad_request(f"Invalid {header} '{raw}': expected {unit}.")
    return number


def list_page(items: Sequence[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """One page of `items` (oldest first) under the `limit`/`order`/`after`/`before` cursor rules."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.", param="order", code="invalid_value"
        )
    limit = _limit(query.get("limit", "20"))
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [item["id"] for item in ordered]
    if (after := query.get("after")) in ids:
        ordered = ordered[ids.index(after) + 1 :]
        ids = ids[ids.index(after) + 1 :]
    if (before := query.get("before")) in ids:
        # `before` pages backwards: the `limit` items right before the cursor.
        window = ordered[: ids.index(before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": has_more,
    }


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise bad_request(
            f"Invalid 'limit': integer between 1 and 100 expected, got {raw}.", param="limit", code="invalid_value"
        )
    return limit
