"""Every class of bad input gets OpenAI's error envelope with the right status and param, and
never reaches the upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import API_KEY, Gateway

RUN = "/v1/threads/runs"
GOOD = {"assistant_id": "asst_1", "thread": {"messages": [{"role": "user", "content": "hi"}]}}


async def call(gateway: Gateway, path: str, *, method: str = "POST", **kwargs: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gateway.server.make_url(path), headers=headers, **kwargs) as response:
            body = await response.json(content_type=None)
            assert response.headers["X-Request-ID"]
            return response.status, body


def assert_error(body: dict[str, Any], type_: str, param: str | None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert body["error"]["param"] == param
    assert body["error"]["message"]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"data": b'{"assistant_id": "asst_1",', "headers": {"Content-Type": "application/json"}}, "invalid_json"),
        ({"data": b"", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
        ({"data": b'{"a": NaN}', "headers": {"Content-Type": "application/json"}}, "invalid_json"),
        ({"data": b"\xff\xfe{}", "headers": {"Content-Type": "application/json"}}, "invalid_json"),
        ({"data": b"assistant_id=asst_1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
         "unsupported_content_type"),
        ({"json": ["not", "an", "object"]}, None),
        ({"json": "just a string"}, None),
    ],
)  # fmt: skip
async def test_unreadable_bodies_are_400(gateway, simulator_state, kwargs, code):
    status, body = await call(gateway, RUN, **kwargs)
    assert status == 400
    assert_error(body, "invalid_request_error", None)
    if code is not None:
        assert body["error"]["code"] == code
    assert simulator_state.requests == []


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"thread": {}}, "assistant_id"),
        ({**GOOD, "temperature": 3}, "temperature"),
        ({**GOOD, "top_p": "1"}, "top_p"),
        ({**GOOD, "max_completion_tokens": 100}, "max_completion_tokens"),
        ({**GOOD, "surprise": True}, "surprise"),
        ({**GOOD, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({**GOOD, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        (
            {
                "assistant_id": "asst_1",
                "thread": {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": "look"},
                                {"type": "image_url", "image_url": {"url": 42}},
                            ],
                        }
                    ]
                },
            },
            "thread.messages[0].content[1].image_url.url",
        ),
    ],
)
async def test_schema_violations_name_the_param(gateway, simulator_state, payload, param):
    status, body = await call(gateway, RUN, json=payload)
    assert status == 400
    assert_error(body, "invalid_request_error", param)
    assert simulator_state.requests == []


async def test_sibling_run_calls_are_validated_too(gateway, simulator_state):
    status, body = await call(gateway, "/v1/threads/thread_1/runs", json={"assistant_id": "a", "top_p": 2})
    assert (status, body["error"]["param"]) == (400, "top_p")
    status, body = await call(
        gateway, "/v1/threads/thread_1/runs/run_1/submit_tool_outputs", json={"tool_outputs": [{"output": 1}]}
    )
    assert (status, body["error"]["param"]) == (400, "tool_outputs[0].output")
    assert simulator_state.requests == []


async def test_body_over_the_limit_is_413(make_gateway, simulator_state):
    gateway = await make_gateway(listen={"max_body_bytes": 1024})
    payload = {**GOOD, "instructions": "x" * 2048}
    status, body = await call(gateway, RUN, json=payload)
    assert status == 413
    assert_error(body, "invalid_request_error", None)
    # Without a Content-Length the limit holds as the body streams in.
    async def chunks():
        yield b'{"assistant_id": "asst_1", "instructions": "'
        for _ in range(8):
            yield b"x" * 256
        yield b'"}'

    status, body = await call(gateway, RUN, data=chunks(), headers={"Content-Type": "application/json"})
    assert status == 413
    assert simulator_state.requests == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/not-an-endpoint", 404),
        ("GET", "/v1/organization/users", 404),
        ("GET", "/v1/threads/../organization", 404),
        ("GET", "/nowhere", 404),
        ("POST", "/healthz", 405),
    ],
)
async def test_unknown_routes(gateway, simulator_state, method, path, status):
    got, body = await call(gateway, path, method=method)
    assert got == status
    assert_error(body, "invalid_request_error", None)
    assert simulator_state.requests == []


async def test_unknown_fields_can_be_passed_through(make_gateway, simulator_state):
    gateway = await make_gateway(upstream={"unknown_fields": "pass"})
    raw = b'{"assistant_id": "asst_x", "vendor_extension": {"a": 1}}'
    status, _ = await call(gateway, RUN, data=raw, headers={"Content-Type": "application/json"})
    assert simulator_state.requests[-1].body == raw  # forwarded byte for byte
    assert status == 404  # the simulator knows no asst_x: its own answer comes back as is


async def test_unknown_key_is_401_when_tenants_are_configured(make_gateway, simulator_state):
    gateway = await make_gateway(
        env={"UP": "sk-up", "TEAM": "team-key"}, upstream={"api_key": "${UP}"}, tenants={"t": {"keys": ["${TEAM}"]}}
    )
    status, body = await call(gateway, RUN, json=GOOD)
    assert status == 401
    assert_error(body, "invalid_request_error", None)
    assert body["error"]["code"] == "invalid_api_key"
    assert simulator_state.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "/v1/threads/../organization/users",
        "/v1/threads%2F..%2Forganization",
        "/v1/assistants/%2e%2e/%2e%2e/admin",
        "/v1/files/..%2f..%2fadmin",
    ],
)
async def test_path_traversal_never_leaves_the_allowlist(gateway, simulator_state, target):
    """Sent raw, as a hostile client would, since HTTP clients normalise such paths away."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nConnection: close\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404")
    assert_error(orjson.loads(body), "invalid_request_error", None)
    assert simulator_state.requests == []
