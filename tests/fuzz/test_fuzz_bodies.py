"""Property-based fuzzing of run-call bodies through the real in-process gateway (every stage on).

Whatever the body, the answer is a success or a 4xx in OpenAI's envelope: never the gateway's own
5xx, never a hang (every exchange is bounded by the session's timeout).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pipeline.validate import MAX_JSON_DEPTH
from tests.conftest import Gateway
from tests.fuzz import strategies as fz
from tests.fuzz.support import MAX_BODY, assert_envelope, check_answer, count_case, examples, exchange, team_headers

pytestmark = [pytest.mark.slow]  # the fuzz suite: thousands of generated cases


def dumps(value: Any) -> bytes:
    """Any JSON, big integers included (orjson stops at 64 bits)."""
    return json.dumps(value, ensure_ascii=False).encode()


RUN_ROUTES = ("/v1/threads/runs", "/v1/threads/thread_fuzz/runs", "/v1/threads/thread_fuzz/runs/run_fuzz/submit_tool_outputs")
JSON = {"Content-Type": "application/json"}


async def post_json(gateway: Gateway, session: aiohttp.ClientSession, path: str, body: bytes) -> tuple[int, Any, bytes]:
    return await exchange(session, "POST", gateway.server.make_url(path), data=body, headers=team_headers(**JSON))


@settings(max_examples=examples(1500))
@given(route=st.sampled_from(RUN_ROUTES), body=fz.json_values | fz.field_soup)
async def test_any_json_body(full_gateway, session, route, body):
    count_case()
    status, headers, raw = await post_json(full_gateway, session, route, dumps(body))
    check_answer(status, headers, raw)
    if not isinstance(body, dict):
        assert status == 400


@settings(max_examples=examples(800))
@given(route=st.sampled_from(RUN_ROUTES), body=st.binary(max_size=300))
async def test_any_bytes(full_gateway, session, route, body):
    count_case()
    status, headers, raw = await post_json(full_gateway, session, route, body)
    check_answer(status, headers, raw)


@settings(max_examples=examples(600))
@given(data=st.data())
async def test_valid_bodies_pass_and_a_wrong_type_anywhere_names_its_path(full_gateway, session, assistant_id, data):
    """A valid body is never refused as invalid; the same body with a value of the wrong JSON kind
    somewhere is either still valid there (a free-form object, a union) or refused naming that place."""
    count_case()
    body = data.draw(fz.create_thread_and_run(assistant_id))
    status, headers, raw = await post_json(full_gateway, session, "/v1/threads/runs", dumps(body))
    check_answer(status, headers, raw)
    assert status in (200, 403), raw[:300]  # the policy may deny (e.g. metadata values); never a 400
    path = data.draw(st.sampled_from(list(fz.paths(body)) or [("assistant_id",)]))
    original: Any = body
    for part in path:
        original = original[part]
    mutated = fz.replaced(body, path, data.draw(fz.other_kind(original)))
    status, headers, raw = await post_json(full_gateway, session, "/v1/threads/runs", dumps(mutated))
    check_answer(status, headers, raw)
    if status == 400:
        param = assert_envelope(status, headers, raw)["param"]
        where = fz.dotted(path)
        # the value itself, something inside it (a union member's field), or the object holding it
        assert param is not None and (param.startswith(where) or where.startswith(param)), (param, where)


@settings(max_examples=examples(500))
@given(data=st.data())
async def test_sibling_run_calls_with_mutated_bodies(full_gateway, session, assistant_id, data):
    """Create-run and submit-tool-outputs bodies, valid or broken, on threads the tenant does not own."""
    count_case()
    route = data.draw(st.sampled_from(RUN_ROUTES[1:]))
    body = data.draw(fz.create_run(assistant_id) if route == RUN_ROUTES[1] else fz.submit_tool_outputs)
    candidates = list(fz.paths(body))
    if candidates and data.draw(st.booleans()):
        path = data.draw(st.sampled_from(candidates))
        body = fz.removed(body, path) if data.draw(st.booleans()) else fz.replaced(body, path, data.draw(fz.json_values))
    status, headers, raw = await post_json(full_gateway, session, route, dumps(body))
    check_answer(status, headers, raw)


def _duplicate_key(body: dict[str, Any], key: str, value: Any) -> bytes:
    """`body` serialised with `key` written twice: `value` first, the real one last."""
    raw = dumps(body)
    return b"{" + dumps(key) + b":" + dumps(value) + b"," + raw[1:]


@settings(max_examples=examples(800))
@given(data=st.data())
async def test_hostile_variations_of_valid_bodies(full_gateway, session, assistant_id, data):
    """Duplicate keys, unknown keys, huge strings, deep nesting, removed fields, grafted junk."""
    count_case()
    body = data.draw(fz.create_thread_and_run(assistant_id))
    kind = data.draw(st.sampled_from(["duplicate", "unknown", "huge", "deep", "remove", "graft"]))
    candidates = list(fz.paths(body))
    expect: tuple[int, ...] = (200, 400, 403, 404, 413)  # 404: the simulator knows no such assistant
    if kind == "duplicate":
        key = data.draw(st.sampled_from(sorted(body)))
        raw_body = _duplicate_key(body, key, data.draw(fz.json_values))
        expect = (400,)
    elif kind == "unknown":
        extra = data.draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in fz.RUN_FIELDS))
        raw_body = dumps({**body, extra: data.draw(fz.json_values)})
        expect = (400,)
    elif kind == "huge":
        size = data.draw(st.sampled_from([MAX_BODY // 2, MAX_BODY + 1, 4 * MAX_BODY]))
        where = data.draw(st.sampled_from(candidates or [("instructions",)]))
        raw_body = dumps(fz.replaced(body, where, "x" * size) if candidates else {**body, "instructions": "x" * size})
        if len(raw_body) > MAX_BODY:
            expect = (413,)
    elif kind == "deep":
        depth = data.draw(st.integers(100, 1100))
        opener, closer = data.draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        tool = {"type": "function", "function": {"name": "f", "parameters": {"x": "DEEP"}}}
        raw_body = dumps({**body, "tools": [tool]}).replace(b'"DEEP"', opener * depth + b"null" + closer * depth)
        # body, tools, the tool, function, parameters: five levels before the nesting starts
        expect = (400,) if 5 + depth > MAX_JSON_DEPTH else (200, 403)
    elif kind == "remove" and candidates:
        raw_body = dumps(fz.removed(body, data.draw(st.sampled_from(candidates))))
    else:
        where = data.draw(st.sampled_from(candidates or [("assistant_id",)]))
        raw_body = dumps(fz.replaced(body, where, data.draw(fz.json_values)) if candidates else body)
    status, headers, raw = await post_json(full_gateway, session, "/v1/threads/runs", raw_body)
    check_answer(status, headers, raw)
    assert status in expect, (kind, status, raw[:300])
    if kind == "duplicate":
        assert orjson.loads(raw)["error"]["code"] == "duplicate_key"
