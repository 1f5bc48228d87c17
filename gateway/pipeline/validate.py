"""The parse + validate stage: a run call's body → raw bytes (forwarded as is) and a typed request.

A run call's body is read whole within `listen.body_timeout_s` and at most `listen.max_body_bytes`
(pass-through bodies stream through `http/body.BodyStream` instead).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import orjson
from aiohttp import web

from gateway.errors import InvalidRequest, RequestTimeout
from gateway.http.body import too_large
from gateway.pipeline.call import RunCall
from gateway.pipeline.track import note_request
from gateway.schema.requests import RunRequest, RunRoute, validate_run_request

MAX_JSON_DEPTH = 128
"""Deepest nesting of arrays and objects in a run call's body. No real request comes near it (OpenAI's
structured-output schemas allow 10 levels), and everything that reads a body afterwards works well
within it: orjson serialises up to 254 levels (a body the policy changes is re-serialised, audit and
trace records wrap parts of it), Python's recursion limit is 1000."""

_NO_ENCODING = ("", "identity")


async def validate(call: RunCall) -> None:
    listen, upstream = call.runtime.config.listen, call.runtime.config.upstream
    call.body, call.data, call.run_request = await read_run_request(
        call.request, call.route, listen.max_body_bytes, upstream.unknown_fields, listen.body_timeout_s
    )
    note_request(call.record, call.run_request, call.data)


async def read_run_request(
    request: web.Request,
    route: RunRoute,
    max_bytes: int,
    unknown_fields: Literal["reject", "pass"],
    timeout_s: float,
) -> tuple[bytes, dict[str, Any], RunRequest]:
    """The raw bytes (forwarded unless the policy changes them), the parsed body, the typed request."""
    body, data = await read_json_body(request, max_bytes, timeout_s)
    return body, data, validate_run_request(route, data, unknown_fields=unknown_fields)


async def read_json_body(request: web.Request, max_bytes: int, timeout_s: float) -> tuple[bytes, Any]:
    """A JSON body read whole, within `max_bytes` and `timeout_s`, and parsed strictly: the bytes
    forwarded are the bytes judged."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(request.content_length, max_bytes)
    if request.content_type != "application/json":
        raise InvalidRequest(
            f"Unsupported Content-Type {request.content_type!r}: send the body as application/json.",
            code="unsupported_content_type",
        )
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _NO_ENCODING:
        # The gateway forwards the bytes it validated: a compressed body would be judged on one
        # text and sent as another. The SDK never compresses request bodies.
        raise InvalidRequest(
            f"Unsupported Content-Encoding {encoding!r}: send the JSON body uncompressed.",
            code="unsupported_content_encoding",
        )
    try:
        body = await _read_within(request, timeout_s)
    except web.HTTPRequestEntityTooLarge:
        raise too_large(None, max_bytes) from None
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g}s.") from None
    except web.RequestPayloadError as exc:  # broken chunked framing, or a body that does not decode
        raise InvalidRequest(f"The request body could not be read: {exc}", code="invalid_body") from None
    return body, parse_json(body)


async def _read_within(request: web.Request, timeout_s: float) -> bytes:
    if request.content.is_eof():  # the whole body came with the headers (the usual case): no timer to arm
        return await request.read()
    async with asyncio.timeout(timeout_s):
        return await request.read()


def parse_json(body: bytes) -> Any:
    """orjson's strict parse (UTF-8, no NaN/Infinity, no lone surrogates), and two refusals of its own:
    nesting deeper than `MAX_JSON_DEPTH`, and a key repeated in one object.

    OpenAI's parser keeps a repeated key's last value, other parsers the first: the policy would judge
    one body and the upstream read another, so the gateway refuses the ambiguity outright.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            f"your HTTP library correctly. The OpenAI API expects a JSON payload.) Detail: {exc}",
            code="invalid_json",
        ) from None
    if isinstance(data, dict | list):  # scalars have neither depth nor keys
        _check_depth(body, data)
        try:
            _DUPLICATE_FINDER.decode(body.decode())  # orjson accepted it: valid UTF-8, valid JSON
        except _DuplicateKey as exc:
            raise InvalidRequest(
                f"The JSON body repeats the key {exc.key!r} in one object; send each key once.",
                code="duplicate_key",
            ) from None
        except (ValueError, RecursionError) as exc:  # never seen: the two parsers agree on what is JSON
            raise InvalidRequest(
                f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
            ) from None
    return data


def _check_depth(body: bytes, data: dict[str, Any] | list[Any]) -> None:
    """Refuse nesting deeper than `MAX_JSON_DEPTH`, at C speed.

    A body with few brackets cannot be that deep. Otherwise orjson, which serialises at most
    `_ORJSON_MAX_DEPTH` levels, is handed the data wrapped in enough extra levels to fail exactly when
    the data itself is deeper than the limit.
    """
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    padded: Any = data
    for _ in range(_ORJSON_MAX_DEPTH - MAX_JSON_DEPTH):
        padded = [padded]
    try:
        orjson.dumps(padded)
    except orjson.JSONEncodeError:  # "Recursion limit reached": parsed JSON holds nothing else it refuses
        raise InvalidRequest(
            f"The JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep.", code="invalid_json"
        ) from None


_ORJSON_MAX_DEPTH = 254  # orjson.dumps raises beyond it (tests/fuzz/test_hostile.py pins it)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(dict(pairs)) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


# Only the object hook matters: numbers are not converted, objects not built.
_DUPLICATE_FINDER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_float=len, parse_int=len, parse_constant=len
)
