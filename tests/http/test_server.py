"""Requests aiohttp's parser refuses before the app sees them: OpenAI's envelope, never an echo.

Both of aiohttp's parsers (llhttp, and the pure-Python one under AIOHTTP_NO_EXTENSIONS=1) refuse
every case below; their own answer quoted the offending bytes, Authorization header included, in
the body and in a logged traceback.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from tests.fuzz.support import assert_envelope

SECRET = b"sk-secret-XYZ"

MALFORMED = {
    "lf_only_line_endings": b"GET /v1/assistants HTTP/1.1\nHost: x\nAuthorization: Bearer " + SECRET + b"\n\n",
    "obs_folded_authorization": b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n " + SECRET + b"\r\n\r\n",
    "space_before_colon": b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer " + SECRET + b"\r\n\r\n",
    "bad_request_line": b"GET /v1/assistants " + SECRET + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_header_name": b"GET /v1/assistants HTTP/1.1\r\nHost: x\r\nX(" + SECRET + b"): 1\r\n\r\n",
    "length_and_chunked": b"POST /v1/threads/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET
    + b"\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
}  # fmt: skip


async def exchange_raw(host: str, port: int, data: bytes) -> bytes:
    """Everything the server sends back to `data` until it closes the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_http_is_400_in_the_envelope_and_never_echoed(make_gateway, caplog, capsys, data):
    gateway = await make_gateway()
    caplog.set_level(logging.DEBUG)
    answer = await exchange_raw(gateway.server.host, gateway.server.port, data)

    assert SECRET not in answer
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    assert int(status_line.split()[1]) == 400, answer[:300]
    assert headers["content-type"].startswith("application/json")
    assert headers["x-request-id"].startswith("req_gw_")
    error = assert_envelope(400, headers, body)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http"
    assert orjson.loads(body) == {"error": error}

    logged = capsys.readouterr()
    assert SECRET.decode() not in caplog.text + logged.out + logged.err
    assert headers["x-request-id"] in caplog.text + logged.out + logged.err  # one short line says what happened
