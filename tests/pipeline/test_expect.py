"""`Expect: 100-continue`: a client is told to send its body only once its key is known and the size
it announces fits; otherwise it gets the refusal at once, and never sends the body."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import TEAM_KEY, team_tenant


async def announce(gateway, path: str, authorization: str | None, length: int, expect: str = "100-continue") -> bytes:
    """Send only the headers of a POST that expects 100-continue; what the gateway answers first."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
                 f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n".encode())  # fmt: skip
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/v1/threads/runs", "/v1/files"])
async def test_continue_comes_after_the_key_and_the_size(make_gateway, simulator_state, path) -> None:
    gateway = await make_gateway(**team_tenant(), listen={"max_body_bytes": 1000, "max_upload_bytes": 1000})
    refused = await announce(gateway, path, None, 10)
    assert refused.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in refused and b"100 Continue" not in refused
    assert b"X-Request-ID: req_gw_" in refused  # answered before the middlewares, in the same shape
    refused = await announce(gateway, path, "Bearer sk-wrong", 10)
    assert refused.startswith(b"HTTP/1.1 401")
    too_big = await announce(gateway, path, f"Bearer {TEAM_KEY}", 5000)
    assert too_big.startswith(b"HTTP/1.1 413") and b"request_too_large" in too_big
    assert (await announce(gateway, path, f"Bearer {TEAM_KEY}", 10)).startswith(b"HTTP/1.1 100 Continue")
    odd = await announce(gateway, path, f"Bearer {TEAM_KEY}", 10, expect="200-ok")
    assert odd.startswith(b"HTTP/1.1 417") and b"expectation_failed" in odd
    assert simulator_state.requests == []
