"""Property-based fuzzing of headers, paths and methods through the real in-process gateway.

Besides "a success or a 4xx in the envelope, never the gateway's own 5xx, never a hang": whatever
the path, the upstream only ever sees paths inside the pass-through allowlist.
"""

from __future__ import annotations

import asyncio
import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from tests.fuzz import strategies as fz
from tests.fuzz.support import TEAM_KEY, check_answer, count_case, examples, exchange, team_headers

pytestmark = [pytest.mark.slow]  # the fuzz suite: thousands of generated cases

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")
ALLOWED = ("/v1/threads", "/v1/assistants", "/v1/files", "/v1/vector_stores")


def inside_allowlist(path: str) -> bool:
    """The path as the upstream reads it (percent-decoded once, %2F included, as the simulator
    records it; dot segments resolved) stays inside."""
    resolved = posixpath.normpath(path)
    return any(resolved == prefix or resolved.startswith(prefix + "/") for prefix in ALLOWED)


@settings(max_examples=examples(1200))
@given(
    method=st.sampled_from(METHODS),
    path=fz.raw_paths,
    body=st.none() | st.binary(max_size=64),
    authorized=st.booleans(),
)
async def test_any_path_and_method(full_gateway, session, simulator_state, method, path, body, authorized):
    count_case()
    seen = len(simulator_state.requests)
    headers = team_headers() if authorized else {}
    url = URL(str(full_gateway.server.make_url("/"))[:-1] + path, encoded=True)
    status, answer_headers, raw = await exchange(session, method, url, data=body, headers=headers)
    check_answer(status, answer_headers, raw, method=method)
    if not authorized and path.startswith("/v1/"):
        assert status == 401
    for forwarded in simulator_state.requests[seen:]:
        assert inside_allowlist(forwarded.path), (path, forwarded.path)


@settings(max_examples=examples(1200))
@given(
    route=st.sampled_from(["/v1/threads/runs", "/v1/assistants", "/v1/threads/thread_x/runs", "/healthz", "/admin/usage"]),
    headers=st.dictionaries(st.sampled_from(fz.INTERESTING_HEADERS) | fz.header_names, fz.header_values, max_size=5),
    keep_auth=st.booleans(),
)
async def test_any_headers(full_gateway, session, assistant_id, route, headers, keep_auth):
    count_case()
    if keep_auth:
        headers = {**headers, "Authorization": f"Bearer {TEAM_KEY}"}
    headers.pop("Host", None)  # the client's own
    body = b'{"assistant_id": "%s"}' % assistant_id.encode() if route.endswith("/runs") else None
    method = "POST" if body is not None else "GET"
    try:
        status, answer_headers, raw = await exchange(
            session, method, full_gateway.server.make_url(route), data=body, headers=headers
        )
    except ValueError:  # a header aiohttp itself refuses to send (e.g. a bad Transfer-Encoding pairing)
        return
    check_answer(status, answer_headers, raw, method=method)


_header_bytes = st.binary(min_size=1, max_size=40).filter(lambda b: b"\r\n" not in b)


@settings(max_examples=examples(600))
@given(name=st.sampled_from([b"Authorization", b"X-Custom", b"OpenAI-Beta", b"Content-Type", b"X-Request-ID"]),
       value=_header_bytes, path=st.sampled_from([b"/v1/threads/runs", b"/v1/assistants", b"/healthz"]))  # fmt: skip
async def test_raw_header_bytes(full_gateway, name, value, path):
    """Bytes no HTTP client would send (CR, NUL, invalid UTF-8, obs-fold) over a raw socket: a 4xx in
    the envelope (from the app, or from the server for what aiohttp's parser refuses) or a normal answer."""
    count_case()
    if name == b"Authorization":
        value = b"Bearer " + value
    body = b'{"assistant_id": "asst_x"}'
    request = (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + name + b": " + value + b"\r\n"
        + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n" + body
    )  # fmt: skip
    reader, writer = await asyncio.open_connection(full_gateway.server.host, full_gateway.server.port)
    try:
        writer.write(request)
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = CIMultiDict(line.split(": ", 1) for line in lines)
    assert status < 500, response[:400]
    check_answer(status, headers, payload)
