"""Faults at every phase of a run call, with limits on: each ends in a clear OpenAI-format error or a
clean end of stream, leaks no task, socket, lease or token reservation (a tenant allowed one run at a
time, and a token budget of exactly one run, can run again right after; a run that went on upstream
after its stream broke holds its slot until the reconciler sees it end), and usage the upstream
reported is still counted.

Complements tests/test_relay.py (the same faults without limits) and tests/test_main.py (SIGTERM).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.keys import STATE
from gateway.simulator import build_simulator_app
from tests.conftest import Gateway
from tests.http.test_relay import body, own_tasks, settle
from tests.support import read_until, reconcile_until_settled, team_tenant

RUN = "/v1/threads/runs"
TEAM = "sk-team"
CAPS = {"tokens": {"max_prompt_tokens": {"max": 1000}, "max_completion_tokens": {"max": 1000}}}
ONE_AT_A_TIME = {"concurrent_runs": 1, "open_streams": 1}
ONE_RUN_OF_TOKENS = {**ONE_AT_A_TIME, "tokens_per_day": 2000}  # a run reserves 1000 + 1000


@web.middleware
async def upstream_faults(request: web.Request, handler: Any) -> web.StreamResponse:
    """Faults the simulator has no header for: `X-Test-Fault: slow-headers:S`, `slow-body:S` (the
    real answer, 64 bytes every S seconds), `huge-json:N` (a run object padded to N bytes)."""
    fault, _, arg = request.headers.get("X-Test-Fault", "").partition(":")
    if fault == "slow-headers":
        await asyncio.sleep(float(arg))
        return await handler(request)
    response = await handler(request)
    if fault == "huge-json" and isinstance(response, web.Response) and response.body:
        run = orjson.loads(response.body)
        return web.json_response({**run, "padding": "x" * int(arg)}, status=response.status)
    if fault == "slow-body" and isinstance(response, web.Response) and response.body:
        data = bytes(response.body)  # type: ignore[arg-type]
        slow = web.StreamResponse(status=response.status, headers={"Content-Type": "application/json"})
        slow.content_length = len(data)
        await slow.prepare(request)
        for start in range(0, len(data), 64):
            await slow.write(data[start : start + 64])
            await asyncio.sleep(float(arg))
        await slow.write_eof()
        return slow
    return response


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = build_simulator_app()
    app.middlewares.append(upstream_faults)
    return await aiohttp_server(app)


async def team(make_gateway: Any, upstream: TestServer, limits: dict[str, Any], **upstream_config: Any) -> Gateway:
    raw = team_tenant(CAPS, limits=limits)
    raw["upstream"] = {**raw["upstream"], "read_timeout_s": 0.5, **upstream_config}
    return await make_gateway(upstream_url=str(upstream.make_url("/v1")), **raw)


async def assistant(gateway: Gateway) -> str:
    async with gateway.async_client(api_key=TEAM) as client:
        return (await client.beta.assistants.create(model="gpt-4o")).id


def headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TEAM}", "OpenAI-Beta": "assistants=v2", **extra}


async def runs_again(gateway: Gateway, assistant_id: str) -> None:
    """Nothing is held: the one concurrency slot, the one stream slot and the one run's worth of
    tokens are all free."""
    async with gateway.async_client(api_key=TEAM) as client:
        stream = await client.beta.threads.create_and_run(assistant_id=assistant_id, stream=True)
        events = [event.event async for event in stream]
    assert events[-1] == "thread.run.completed"


async def call(gateway: Gateway, assistant_id: str, stream: bool, **extra: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway.server.make_url(RUN), json=body(assistant_id, stream), headers=headers(**extra)
        ) as response:
            return response.status, response.content_type, await response.read()


def error_of(raw: bytes) -> dict[str, Any]:
    error = orjson.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return dict(error)


# --- the upstream misbehaves; no run exists upstream, so every token comes back too ----------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"X-Test-Fault": "slow-headers:1.5"}, 504, "upstream_timeout"),
        ({"X-Simulator-Fault": "hang"}, 504, "upstream_timeout"),
        ({"X-Simulator-Fault": "http-500"}, 500, None),
        ({"X-Simulator-Fault": "http-503"}, 503, None),
        ({"X-Simulator-Fault": "http-429"}, 429, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_fails_before_any_run_exists(make_gateway, upstream, fault, status, code, stream):
    gateway = await team(make_gateway, upstream, ONE_RUN_OF_TOKENS)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    got, content_type, raw = await call(gateway, assistant_id, stream, **fault)
    assert (got, content_type) == (status, "application/json")
    error = error_of(raw)  # the gateway's own, or the upstream's passed through: OpenAI's envelope
    if code is not None:
        assert (error["type"], error["code"]) == ("upstream_error", code)
    await settle(gateway, baseline)
    await runs_again(gateway, assistant_id)


async def test_slow_upstream_headers_within_the_read_timeout_are_fine(make_gateway, upstream):
    gateway = await team(make_gateway, upstream, ONE_RUN_OF_TOKENS)
    assistant_id = await assistant(gateway)
    status, _, raw = await call(gateway, assistant_id, False, **{"X-Test-Fault": "slow-headers:0.3"})
    assert status == 200 and orjson.loads(raw)["object"] == "thread.run"


# --- the upstream created the run, then misbehaved -----------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"X-Test-Fault": "slow-body:0.8"}, "upstream_unavailable"),  # a gap past read_timeout_s mid-body
        ({"X-Test-Fault": "huge-json:4096"}, "upstream_response_too_large"),  # over max_response_bytes
    ],
)
async def test_a_broken_or_oversized_run_object_is_502(make_gateway, upstream, fault, code):
    gateway = await team(make_gateway, upstream, ONE_AT_A_TIME, max_response_bytes=2048)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    status, _, raw = await call(gateway, assistant_id, False, **fault)
    assert status == 502
    assert (error_of(raw)["type"], error_of(raw)["code"]) == ("upstream_error", code)
    await settle(gateway, baseline)
    await runs_again(gateway, assistant_id)


@pytest.mark.parametrize(
    ("fault", "ending"),
    [
        ("drop:3", "upstream_stream_broken"),  # the connection is cut
        ("hang-mid-stream:3", "upstream_stream_broken"),  # silence past read_timeout_s
        ("error-event:3", '"type":"server_error"'),  # the upstream's own error event, relayed
    ],
)
async def test_a_stream_that_breaks_ends_cleanly(make_gateway, upstream, fault, ending):
    gateway = await team(make_gateway, upstream, ONE_AT_A_TIME)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    status, content_type, raw = await call(gateway, assistant_id, True, **{"X-Simulator-Fault": fault})
    assert (status, content_type) == (200, "text/event-stream")
    text = raw.decode()
    assert text.endswith("\n\n") and "event: error\ndata: " in text and ending in text
    record = (await gateway.runs.wait())[-1]
    assert record.error
    await settle(gateway, baseline)
    await reconcile_until_settled(gateway)  # the run went on upstream: its slot is free once it has ended
    await runs_again(gateway, assistant_id)


@pytest.mark.parametrize("fault", ["drop:3", "error-event:3"])
async def test_usage_of_a_broken_stream_is_still_counted(make_gateway, upstream, fault):
    """The stream broke, the run went on upstream: the reconciler polls it to its end and counts
    the usage the upstream reports, once."""
    gateway = await make_gateway(
        upstream_url=str(upstream.make_url("/v1")),
        env={"UP": "sk-upstream", "TEAM": TEAM},
        upstream={"api_key": "${UP}"},
        tenants={"team": {"keys": ["${TEAM}"], "policy": "team"}},
        policies={"team": CAPS},
        # Room for a run next to a settled one, not next to one still reserved (1000 + 1000 each).
        limits={"tenants": {"team": {**ONE_AT_A_TIME, "tokens_per_day": 3999}}, "reconcile_after_s": 0.1,
                "reconcile_interval_s": 0.05},  # fmt: skip
    )
    assistant_id = await assistant(gateway)
    status, _, raw = await call(gateway, assistant_id, True, **{"X-Simulator-Fault": fault})
    assert status == 200 and b"event: error" in raw
    record = (await gateway.runs.wait())[-1]
    assert record.run_id and record.usage is None  # the stream never said
    rows = await read_until(lambda: gateway.app[STATE].usage("team", "2000-01-01"), bool)
    assert [(row.runs, row.total_tokens > 0) for row in rows] == [(1, True)]
    await runs_again(gateway, assistant_id)  # the reservation was settled, the rest given back


# --- the client goes away ----------------------------------------------------------------


async def test_client_gone_before_the_upstream_answers(make_gateway, upstream):
    gateway = await team(make_gateway, upstream, ONE_RUN_OF_TOKENS)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    async with aiohttp.ClientSession() as session:
        pending = asyncio.create_task(
            session.post(gateway.server.make_url(RUN), json=body(assistant_id), headers=headers(**{"X-Simulator-Fault": "hang"}))
        )
        await asyncio.sleep(0.2)
        pending.cancel()  # the client gives up while the upstream says nothing
        with pytest.raises(asyncio.CancelledError):
            await pending
    record = (await gateway.runs.wait())[-1]
    assert record.client_gone or record.error
    await settle(gateway, baseline)
    await runs_again(gateway, assistant_id)


async def test_client_gone_mid_body(make_gateway, upstream):
    gateway = await team(make_gateway, upstream, ONE_RUN_OF_TOKENS)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    payload = orjson.dumps(body(assistant_id))
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    writer.write(
        f"POST {RUN} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEAM}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload[: len(payload) // 2]
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()  # half a body, then gone
    await settle(gateway, baseline)
    assert gateway.runs.finished == []  # never got as far as a run call
    await runs_again(gateway, assistant_id)


@pytest.mark.parametrize("after_events", [1, 10])
async def test_client_gone_mid_stream(make_gateway, upstream, after_events):
    gateway = await team(make_gateway, upstream, ONE_AT_A_TIME)
    assistant_id = await assistant(gateway)
    baseline = own_tasks()
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.server.make_url(RUN), json=body(assistant_id), headers=headers(**{"X-Simulator-Event-Delay-Ms": "20"})
        )
        for _ in range(after_events):
            await response.content.readuntil(b"\n\n")
        response.close()
    record = (await gateway.runs.wait())[-1]
    assert record.client_gone and not record.broken
    await settle(gateway, baseline)
    await reconcile_until_settled(gateway)  # a run the client left goes on upstream, holding its slot to its end
    await runs_again(gateway, assistant_id)


async def test_sdk_sees_each_fault_as_its_own_error(make_gateway, upstream):
    """What the application sees through the official SDK."""
    gateway = await team(make_gateway, upstream, ONE_AT_A_TIME)
    assistant_id = await assistant(gateway)
    async with gateway.async_client(api_key=TEAM) as client:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.beta.threads.create_and_run(assistant_id=assistant_id, extra_headers={"X-Simulator-Fault": "hang"})
        assert caught.value.status_code == 504 and caught.value.body["code"] == "upstream_timeout"
        with pytest.raises(openai.InternalServerError):
            await client.beta.threads.create_and_run(assistant_id=assistant_id, extra_headers={"X-Simulator-Fault": "http-500"})
        with pytest.raises(openai.APIError, match="upstream stream broke"):
            stream = await client.beta.threads.create_and_run(
                assistant_id=assistant_id, stream=True, extra_headers={"X-Simulator-Fault": "drop:2"}
            )
            async for _event in stream:
                pass
    await reconcile_until_settled(gateway)  # the broken stream's run went on upstream
    await runs_again(gateway, assistant_id)
