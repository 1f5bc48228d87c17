"""Hostile input, case by case: each gets a clear 4xx (OpenAI's envelope wherever the app answers),
never a 5xx, a traceback or a hang, and never reaches the upstream unless it is harmless there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.cli import serve
from gateway.pipeline import validate
from tests.fuzz.support import MAX_BODY, TEAM_KEY, assert_envelope, exchange, team_headers
from tests.http.test_relay import own_tasks, settle

pytestmark = [pytest.mark.slow]  # the fuzz suite: thousands of generated cases

RUN = "/v1/threads/runs"
JSON = {"Content-Type": "application/json"}


async def post(gateway: Any, session: aiohttp.ClientSession, body: bytes, path: str = RUN, **headers: str) -> tuple[int, dict[str, Any]]:
    status, answer_headers, raw = await exchange(
        session, "POST", gateway.server.make_url(path), data=body, headers=team_headers(**JSON, **headers)
    )
    return status, assert_envelope(status, answer_headers, raw) if status >= 400 else orjson.loads(raw)


async def raw_request(gateway: Any, data: bytes, *, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Bytes as a hostile client sends them; the answer's status, headers and body."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
        return int(status_line.split()[1]), headers, body
    finally:
        writer.close()


def request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", f"Authorization: Bearer {TEAM_KEY}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + b"1" + closer * depth


# --- JSON ---------------------------------------------------------------------------------


def test_depth_is_exact_however_many_brackets_the_body_has():
    deep_enough = b"[" + nested(validate.MAX_JSON_DEPTH - 2) + b"," + b",".join([b"[]"] * 300) + b"]"
    assert validate.parse_json(b'{"a":' + deep_enough + b"}")  # 128 levels, 400 brackets: fine
    with pytest.raises(validate.InvalidRequest, match="levels deep"):
        validate.parse_json(b'{"a":[' + deep_enough + b"]}")


def test_orjson_serialises_254_levels_and_no_more():
    """validate._check_depth relies on it."""
    value: Any = 1
    for _ in range(254):
        value = [value]
    orjson.dumps(value)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps([value])


@pytest.mark.parametrize("opener, closer", [(b"[", b"]"), (b'{"k":', b"}")])
async def test_nesting_is_refused_past_the_limit_and_fine_up_to_it(full_gateway, session, assistant_id, simulator_state, opener, closer):
    # body → metadata-free `tools` → tool → function → parameters → {"x": ...}: five levels before ours
    def body(depth: int) -> bytes:
        return b'{"assistant_id":"%s","tools":[{"type":"function","function":{"name":"f","parameters":{"x":%s}}}]}' % (
            assistant_id.encode(), nested(depth, opener, closer))  # fmt: skip

    status, _ = await post(full_gateway, session, body(validate.MAX_JSON_DEPTH - 5))
    assert status == 200  # and the policy's clamp re-serialised it: orjson wrote every level back
    forwarded = orjson.loads(simulator_state.requests[-1].body)
    assert forwarded["max_completion_tokens"] == 1000
    seen = len(simulator_state.requests)
    for depth in (validate.MAX_JSON_DEPTH - 4, 300, 1000, 5000):
        status, error = await post(full_gateway, session, body(depth))
        assert (status, error["code"]) == (400, "invalid_json"), depth
        assert "levels deep" in error["message"] or "depth" in error["message"]
    assert len(simulator_state.requests) == seen


@pytest.mark.parametrize(
    "body",
    [
        b'{"assistant_id": "asst_1", "assistant_id": "asst_2"}',
        b'{"assistant_id": "asst_1", "thread": {"metadata": {"a": "1", "a": "2"}}}',
        b'{"assistant_id": "asst_1", "tools": [{"type": "function", "type": "code_interpreter"}]}',
        b'{"assistant_id": "asst_1", "\\u0061ssistant_id": "asst_2"}',  # the same key, escaped
        b'{"assistant_id": "asst_1", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"x": 1, "x": 2}}}]}',
    ],
)
async def test_duplicate_keys_are_refused(full_gateway, session, simulator_state, body):
    status, error = await post(full_gateway, session, body)
    assert (status, error["code"]) == (400, "duplicate_key")
    assert "repeats the key" in error["message"]
    assert simulator_state.requests == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"assistant_id": "a", "temperature": NaN}',
        b'{"assistant_id": "a", "temperature": Infinity}',
        b'{"assistant_id": "a", "temperature": -Infinity}',
        b'{"assistant_id": "a", "temperature": 1e400}',
        b'{"assistant_id": "a", "top_p": -1e999}',
        b'{"assistant_id": "a\xff"}',  # not UTF-8
        b'{"assistant_id": "a\xc0\xaf"}',  # overlong encoding of "/"
        b'{"assistant_id": "a\xed\xa0\x80"}',  # a surrogate, UTF-8 encoded
        b'{"assistant_id": "\\ud800"}',  # a lone surrogate, escaped
        b'{"assistant_id": "a\xe2\x82"}',  # truncated sequence
        b"\xef\xbb\xbf{}",  # byte order mark
        b'{"assistant_id": "a\x00"}',  # a raw control character
        b'{"assistant_id": "a"} trailing',
        b"",
    ],
)
async def test_unparsable_bodies_are_400_invalid_json(full_gateway, session, simulator_state, body):
    status, error = await post(full_gateway, session, body)
    assert (status, error["code"]) == (400, "invalid_json")
    assert simulator_state.requests == []


async def test_huge_strings_up_to_the_limit_then_413(full_gateway, session, assistant_id):
    head = b'{"assistant_id":"%s","tools":[{"type":"function","function":{"name":"f","description":"' % assistant_id.encode()
    tail = b'"}}]}'
    fits = head + b"x" * (MAX_BODY - len(head) - len(tail)) + tail
    assert len(fits) == MAX_BODY
    status, _ = await post(full_gateway, session, fits)
    assert status == 200
    status, error = await post(full_gateway, session, head + b"x" * (MAX_BODY - len(head) - len(tail) + 1) + tail)
    assert (status, error["code"]) == (413, "request_too_large")


async def test_compressed_run_bodies_are_refused(full_gateway, session, simulator_state):
    import gzip

    status, error = await post(full_gateway, session, gzip.compress(b'{"assistant_id": "a"}'), **{"Content-Encoding": "gzip"})
    assert (status, error["code"]) == (400, "unsupported_content_encoding")
    assert simulator_state.requests == []


# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "X-Injected: a\rX-Evil: b",
        "X-Injected: a\nX-Evil: b",
        "X-Injected: a\x00b",
        "X-Injected: a\r\n b",  # obsolete line folding
        "X Injected: a",
    ],
)
async def test_header_injection_never_reaches_the_upstream(full_gateway, simulator_state, header):
    """A lone CR or LF, NUL, obsolete folding, a bad name: aiohttp's parser refuses the message
    (400 in the envelope, connection closed) before the app sees it, so nothing can be smuggled upstream."""
    status, headers, body = await raw_request(
        full_gateway, request_head("GET", "/v1/assistants", "OpenAI-Beta: assistants=v2", header, "Connection: close")
    )
    assert status == 400
    assert assert_envelope(status, {"X-Request-ID": headers["x-request-id"]}, body)["code"] == "invalid_http"
    assert simulator_state.requests == []


@pytest.mark.parametrize("path", ["/v1/assistants", RUN])
async def test_header_values_that_are_not_utf8_are_400(full_gateway, simulator_state, path):
    head = request_head("POST", path, "Content-Type: application/json", "Content-Length: 2", "Connection: close")
    hostile = head.replace(b"Host: gateway", b"Host: gateway\r\nX-Name: caf\xe9 \xff")
    status, headers, body = await raw_request(full_gateway, hostile + b"{}")
    assert status == 400
    error = assert_envelope(status, {"X-Request-ID": headers["x-request-id"]}, body)
    assert error["code"] == "invalid_header" and "X-Name" in error["message"]
    assert simulator_state.requests == []


async def test_an_authorization_header_that_is_not_utf8_is_400_not_500(full_gateway, simulator_state):
    head = request_head("GET", "/v1/assistants", "Connection: close").replace(TEAM_KEY.encode(), b"\xff\xfe")
    status, headers, body = await raw_request(full_gateway, head)
    assert status == 400
    assert assert_envelope(status, {"X-Request-ID": headers["x-request-id"]}, body)["code"] == "invalid_header"
    assert simulator_state.requests == []


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/v1/threads/../organization/users",
        "/v1/threads/%2e%2e/organization",
        "/v1/threads/.%2E/organization",
        "/v1/threads%2F..%2Forganization",
        "/v1/threads%2f%2e%2e%2forganization",
        "/v1/assistants/x/../../admin",
        "/v1/files/..",
        "/v1/files/.",
        "/v1//organization",
        "/v1/%74hreads/../organization",
        "http://upstream.example/v1/organization",
    ],
)
async def test_traversal_and_encoded_slashes_never_leave_the_allowlist(full_gateway, simulator_state, target):
    status, headers, body = await raw_request(full_gateway, request_head("GET", target, "Connection: close"))
    assert status in (404, 308)  # no such path, or another spelling of one inside (sent there, not served)
    if status == 308:
        assert headers["location"] == "/v1/files"  # (`/v1/files/.`)
    assert assert_envelope(status, {"X-Request-ID": headers["x-request-id"]}, body)["type"] == "invalid_request_error"
    assert simulator_state.requests == []


# --- slow clients -------------------------------------------------------------------------


async def test_slow_headers_are_cut_off(make_full_gateway):
    """Slowloris: a request's headers, a byte every 50 ms, forever; the connection is closed at the
    keep-alive bound (75 s in production, 0.5 s here)."""
    gateway = await make_full_gateway(server_options={"keepalive_timeout": 0.5})
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    started = time.monotonic()
    closed_after = None
    try:
        for byte in (b"POST /v1/threads/runs HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200):
            writer.write(bytes([byte]))
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except ConnectionError:
                closed_after = time.monotonic() - started
                break
    finally:
        writer.close()
    assert closed_after is not None and closed_after < 5, closed_after  # (the headers would take 12 s)


async def _dribble(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass  # cut off: the point


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_slow_run_call_body_is_408_and_closed(make_full_gateway, simulator_state, framing):
    full_gateway = await make_full_gateway(listen={"body_timeout_s": 0.5})
    body = b'{"assistant_id": "asst_1", "instructions": "' + b"x" * 200 + b'"}'
    length = f"Content-Length: {len(body)}" if framing == "content-length" else "Transfer-Encoding: chunked"
    if framing == "chunked":
        body = b"".join(b"1\r\n" + bytes([byte]) + b"\r\n" for byte in body) + b"0\r\n\r\n"
    reader, writer = await asyncio.open_connection(full_gateway.server.host, full_gateway.server.port)
    writer.write(request_head("POST", RUN, "Content-Type: application/json", length))
    dribbling = asyncio.create_task(_dribble(writer, body, 0.02))
    started = time.monotonic()
    try:
        try:
            head: bytes | None = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except ConnectionResetError:
            head = None  # the close overtook the 408 (a loaded machine): cut off all the same
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 4, elapsed  # (the whole body would take 5 s and more)
        dribbling.cancel()
        if head is not None:
            assert head.startswith(b"HTTP/1.1 408"), head
            assert b"Connection: close" in head
            # then the gateway stops listening: LINGERING_TIME_S later, the connection is closed
            with contextlib.suppress(ConnectionResetError):
                payload = orjson.loads(await asyncio.wait_for(reader.read(), serve.LINGERING_TIME_S + 5))
                assert payload["error"]["code"] == "request_timeout"
    finally:
        dribbling.cancel()
        writer.close()
    assert simulator_state.requests == []


STALLED = {  # a JSON body is read whole (its object references are checked) within body_timeout_s
    "json": ("/v1/vector_stores", JSON, b'{"name": "a vector store", "metadata": {', "body_timeout_s"),
    "upload": ("/v1/files", {"Content-Type": "multipart/form-data; boundary=b"}, b"--b\r\n", "upload_idle_timeout_s"),
}


@pytest.mark.parametrize("kind", STALLED)
async def test_a_stalled_upload_is_408(make_full_gateway, kind):
    """A pass-through body that stops mid-way: 408 once it has stalled for its bound, the upstream
    request is abandoned, nothing leaks."""
    path, content_type, start, bound = STALLED[kind]
    full_gateway = await make_full_gateway(listen={bound: 0.3})
    baseline = own_tasks()
    stall = asyncio.Event()

    async def upload():
        yield start
        await stall.wait()

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        status, headers, raw = await exchange(
            session, "POST", full_gateway.server.make_url(path), data=upload(), headers=team_headers(**content_type)
        )
        assert time.monotonic() - started < 3
    assert assert_envelope(status, headers, raw)["code"] == "request_timeout" and status == 408
    stall.set()
    await settle(full_gateway, baseline)


# --- oversized bodies ---------------------------------------------------------------------


async def test_an_oversized_chunked_run_call_is_refused_before_its_end(full_gateway, simulator_state):
    """Chunks past the limit and never a last chunk: the 413 comes while the body is still open."""
    chunk = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2 * MAX_BODY // len(chunk)))
    head = request_head("POST", RUN, "Content-Type: application/json", "Transfer-Encoding: chunked")
    status, headers, body = await raw_request(full_gateway, head + chunks)
    assert status == 413
    assert assert_envelope(status, {"X-Request-ID": headers["x-request-id"]}, body)["code"] == "request_too_large"
    assert simulator_state.requests == []


@pytest.mark.parametrize("declared", [False, True])
async def test_an_oversized_upload_is_413(full_gateway, simulator_state, declared):
    """Pass-through bodies are counted as they stream: with no Content-Length (chunked) the upload
    is cut at listen.max_upload_bytes; with one over it, refused before reading."""
    baseline = own_tasks()
    sent = 0

    async def upload():
        nonlocal sent
        for _ in range(4 * MAX_BODY // 4096):
            sent += 4096
            yield b"y" * 4096

    kwargs: dict[str, Any] = {"data": upload()}
    if declared:
        kwargs = {"data": b"y" * (2 * MAX_BODY)}
    async with aiohttp.ClientSession() as session:
        status, headers, raw = await exchange(
            session, "POST", full_gateway.server.make_url("/v1/files"), headers=team_headers(**JSON), **kwargs
        )
    assert status == 413
    assert assert_envelope(status, headers, raw)["code"] == "request_too_large"
    assert all(request.path != "/v1/files" or len(request.body) <= MAX_BODY for request in simulator_state.requests)
    await settle(full_gateway, baseline)


# --- the gateway's own document -----------------------------------------------------------


async def test_openapi_document_describes_the_gateway(full_gateway, session):
    status, _, raw = await exchange(session, "GET", full_gateway.server.make_url("/openapi.json"))
    document = orjson.loads(raw)
    assert status == 200 and document["openapi"].startswith("3.1")
    paths = document["paths"]
    run = paths["/v1/threads/runs"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateThreadAndRunRequest"
    }
    assert "assistant_id" in document["components"]["schemas"]["CreateThreadAndRunRequest"]["properties"]
    assert {"400", "401", "403", "404", "413", "429", "502", "504"} <= set(run["responses"])
    assert set(paths) >= {
        "/v1/threads/{thread_id}/runs", "/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
        "/v1/assistants", "/v1/assistants/{path}", "/v1/files/{path}", "/v1/vector_stores/{path}",
        "/healthz", "/readyz", "/metrics", "/openapi.json", "/admin/reload", "/admin/usage",
    }  # fmt: skip
    envelope = document["components"]["schemas"]["ErrorResponse"]["properties"]["error"]
    assert envelope["required"] == ["message", "type", "param", "code"]
