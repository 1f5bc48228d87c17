"""Upstream trouble and client disconnects: clear errors or clean stream ends, nothing leaked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.keys import SESSION
from tests.conftest import API_KEY, Gateway
from tests.support import both_protocols, free_port, series

RUN = "/v1/threads/runs"


def headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2", **extra}


async def new_assistant(gateway: Gateway, **kwargs: Any) -> str:
    async with gateway.async_client() as client:
        return (await client.beta.assistants.create(model="gpt-4o", **kwargs)).id


def body(assistant_id: str, stream: bool = True) -> dict[str, Any]:
    return {"assistant_id": assistant_id, "thread": {"messages": [{"role": "user", "content": "hi"}]}, "stream": stream}


def pool_in_use(gateway: Gateway) -> int:
    connector = gateway.app[SESSION].connector
    assert connector is not None
    return sum(len(conns) for conns in connector._acquired_per_host.values())  # noqa: SLF001


def own_tasks() -> int:
    """Tasks other than servers' per-connection loops (idle keep-alive upstream connections are fine)."""
    return sum(1 for task in asyncio.all_tasks() if task.get_coro().__qualname__ != "RequestHandler.start")


def client_connections(gateway: Gateway) -> int:
    return len(gateway.server.runner.server.connections)  # type: ignore[union-attr]


async def settle(gateway: Gateway, baseline_tasks: int) -> None:
    """Wait (bounded) until the gateway holds no client or upstream connection and no extra task."""
    for _ in range(100):
        if pool_in_use(gateway) == 0 and client_connections(gateway) == 0 and own_tasks() <= baseline_tasks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"leaked: {pool_in_use(gateway)} upstream, {client_connections(gateway)} client connections, "
        f"tasks {asyncio.all_tasks()}"
    )


async def test_upstream_refused_is_502(make_gateway):
    gateway = await make_gateway(upstream_url=f"http://127.0.0.1:{free_port()}/v1")
    baseline = own_tasks()
    with pytest.raises(openai.APIStatusError) as caught:
        async with gateway.async_client() as client:
            await client.beta.threads.create_and_run(assistant_id="asst_1")
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"
    assert caught.value.body["code"] == "upstream_unavailable"
    record = (await gateway.runs.wait())[0]
    assert record.error and record.upstream_status is None
    await settle(gateway, baseline)


async def test_upstream_timeout_is_504(make_gateway, simulator_state):
    gateway = await make_gateway(upstream={"read_timeout_s": 0.3})
    baseline = own_tasks()
    assistant_id = await new_assistant(gateway)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.server.make_url(RUN), json=body(assistant_id), headers=headers(**{"X-Simulator-Fault": "hang"})
        )
        assert response.status == 504
        error = (await response.json())["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_timeout")
    await settle(gateway, baseline)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_upstream_errors_pass_through_as_is(gateway, simulator, status):
    baseline = own_tasks()
    fault = headers(**{"X-Simulator-Fault": f"http-{status}"})
    async with aiohttp.ClientSession() as session:
        direct = await session.post(simulator.make_url(RUN), json=body("asst_1"), headers=fault)
        direct_body = await direct.read()
        via = await session.post(gateway.server.make_url(RUN), json=body("asst_1"), headers=fault)
        via_body = await via.read()
    assert via.status == direct.status == status
    assert via_body == direct_body
    if status == 429:
        assert via.headers["retry-after"] == direct.headers["retry-after"]
        assert "x-ratelimit-limit-requests" in via.headers
    await settle(gateway, baseline)


async def test_validated_body_is_forwarded_byte_for_byte(gateway, simulator_state):
    assistant_id = await new_assistant(gateway)
    raw = (
        b'{ "thread" : {"messages":[{"role":"user","content":"caf\\u00e9 \xe2\x98\x95"}]},\n'
        b'  "temperature": 1.0e0, "assistant_id":"' + assistant_id.encode() + b'" }'
    )
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.server.make_url(RUN), data=raw, headers=headers(**{"Content-Type": "application/json"})
        )
        assert response.status == 200
    assert simulator_state.requests[-1].body == raw
    assert simulator_state.requests[-1].headers["Content-Length"] == str(len(raw))


async def test_sdk_sees_upstream_rate_limit(gateway):
    client = gateway.async_client()
    with pytest.raises(openai.RateLimitError) as caught:
        await client.beta.threads.create_and_run(assistant_id="asst_1", extra_headers={"X-Simulator-Fault": "http-429"})
    assert caught.value.response.headers["retry-after"]


async def test_mid_stream_drop_ends_the_client_stream_cleanly(gateway):
    baseline = own_tasks()
    assistant_id = await new_assistant(gateway)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.server.make_url(RUN), json=body(assistant_id), headers=headers(**{"X-Simulator-Fault": "drop:3"})
        )
        assert response.status == 200
        text = (await response.read()).decode()  # a clean end: no ClientPayloadError here
    assert text.count("event: thread.") == 3
    assert text.endswith("\n\n")
    assert "event: error\ndata: " in text and "upstream_stream_broken" in text
    record = (await gateway.runs.wait())[-1]
    assert record.broken and record.events == 3 and record.error == "upstream stream broke"
    await settle(gateway, baseline)


async def test_a_stream_open_at_the_drain_deadline_ends_with_an_error_event_recorded_as_drained(make_gateway):
    gateway = await make_gateway(listen={"drain_timeout_s": 0.2})
    assistant_id = await new_assistant(gateway)
    slow = headers(**{"X-Simulator-Event-Delay-Ms": "300"})
    async with aiohttp.ClientSession() as session:
        response = await session.post(gateway.server.make_url(RUN), json=body(assistant_id), headers=slow)
        await response.content.readuntil(b"\n\n")
        await gateway.app.shutdown()  # what SIGTERM sets off: the drain begins
        text = (await response.read()).decode()  # a clean end: no ClientPayloadError here
        async with session.get(gateway.server.make_url("/metrics")) as scraped:
            metrics = await scraped.text()
    assert text.endswith("\n\n") and "thread.run.completed" not in text
    error = text.rsplit("event: error\ndata: ", 1)[1]
    assert json.loads(error)["error"] == {
        "message": "The gateway is shutting down; the stream was cut.", "type": "server_error", "param": None,
        "code": "gateway_draining",
    }  # fmt: skip
    record = (await gateway.runs.wait())[-1]
    assert (record.drained, record.client_gone, record.broken) == (True, False, False)
    assert record.error_type == "gateway_draining"
    assert [s.value for s in series(metrics, "gateway_drained_streams_total", tenant="passthrough")] == [1.0]
    assert not series(metrics, "gateway_broken_streams_total", tenant="passthrough")


async def test_sdk_raises_on_a_broken_stream(gateway):
    client = gateway.async_client()
    assistant_id = await new_assistant(gateway)
    with pytest.raises(openai.APIError, match="upstream stream broke"):
        stream = await client.beta.threads.create_and_run(
            assistant_id=assistant_id, stream=True, extra_headers={"X-Simulator-Fault": "drop:5"}
        )
        async for _event in stream:
            pass


async def test_client_disconnect_closes_the_upstream_stream(gateway, simulator_state):
    baseline = own_tasks()
    assistant_id = await new_assistant(gateway)
    slow = headers(**{"X-Simulator-Event-Delay-Ms": "50"})
    async with aiohttp.ClientSession() as session:
        response = await session.post(gateway.server.make_url(RUN), json=body(assistant_id), headers=slow)
        assert response.status == 200
        await response.content.readuntil(b"\n\n")
        response.close()  # the client walks away mid-stream
    record = (await gateway.runs.wait())[-1]
    assert record.client_gone and not record.broken
    for _ in range(100):
        if simulator_state.open_streams == 0:
            break
        await asyncio.sleep(0.02)
    assert simulator_state.open_streams == 0
    assert simulator_state.aborted_streams == 1
    await settle(gateway, baseline)


async def test_upstream_error_event_is_relayed_and_recorded(gateway):
    assistant_id = await new_assistant(gateway)
    client = gateway.async_client()
    with pytest.raises(openai.APIError):
        stream = await client.beta.threads.create_and_run(
            assistant_id=assistant_id, stream=True, extra_headers={"X-Simulator-Fault": "error-event"}
        )
        async for _event in stream:
            pass
    record = (await gateway.runs.wait())[-1]
    assert record.error and not record.broken


async def test_hop_by_hop_and_credentials_hygiene(make_gateway, simulator_state):
    gateway = await make_gateway(
        env={"UP": "sk-upstream", "TEAM": "team-key"},
        upstream={"api_key": "${UP}"},
        tenants={"t": {"keys": ["${TEAM}"]}},
    )
    sent = {
        "Authorization": "Bearer team-key",
        "OpenAI-Beta": "assistants=v2",
        "OpenAI-Organization": "org-1",
        "OpenAI-Project": "proj-1",
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "must not pass",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Request-ID": "client-chosen-1",
    }
    async with aiohttp.ClientSession() as session:
        response = await session.get(gateway.server.make_url("/v1/assistants"), headers=sent)
        assert response.status == 200
        assert response.headers["X-Request-ID"] == "client-chosen-1"
        assert response.headers["X-Upstream-Request-ID"].startswith("req_")
    got = simulator_state.requests[-1].headers
    assert got["Authorization"] == "Bearer sk-upstream"
    assert "OpenAI-Organization" not in got and "OpenAI-Project" not in got  # not with the shared key
    assert got["X-Request-ID"] == "client-chosen-1"
    assert "X-Secret-Hop" not in got and "Proxy-Authorization" not in got


async def test_base_url_with_path_prefix(make_gateway, aiohttp_server):
    from aiohttp import web

    from gateway.simulator import build_simulator_app

    corporate = web.Application()
    corporate.add_subapp("/openai/", build_simulator_app())
    upstream = await aiohttp_server(corporate)
    gateway = await make_gateway(upstream_url=str(upstream.make_url("/openai/v1")))
    client = gateway.async_client()
    created = await client.beta.assistants.create(model="gpt-4o")
    assert (await client.beta.assistants.retrieve(created.id)).id == created.id


@pytest.mark.parametrize("path", ["/v1/assistants", "/v1/threads/runs"])
async def test_an_upstream_error_never_shows_the_upstream_key(make_gateway, path):
    gateway = await make_gateway(
        env={"UP": "sk-upstream", "TEAM": "team-key"},
        upstream={"api_key": "${UP}"},
        tenants={"t": {"keys": ["${TEAM}"], "unknown_objects": "allow"}},  # (asst_1 is nobody's)
    )
    headers = {"Authorization": "Bearer team-key", "OpenAI-Beta": "assistants=v2", "X-Simulator-Fault": "http-401"}
    async with aiohttp.ClientSession() as session:
        method = session.post if path.endswith("runs") else session.get
        async with method(gateway.server.make_url(path), json={"assistant_id": "asst_1"}, headers=headers) as response:
            body = await response.json()
    assert response.status == 401 and body["error"]["code"] == "invalid_api_key", body
    assert "sk-***" in body["error"]["message"] and "sk-sim" not in body["error"]["message"]  # masked whole


@pytest.mark.parametrize("method", ["TRACE", "PUT", "PATCH"])
async def test_methods_the_api_does_not_use_are_refused(make_gateway, simulator_state, method):
    gateway = await make_gateway(env={"UP": "sk-upstream", "TEAM": "team-key"}, upstream={"api_key": "${UP}"},
                                 tenants={"t": {"keys": ["${TEAM}"]}})  # fmt: skip
    async with aiohttp.ClientSession() as session:
        async with session.request(method, gateway.server.make_url("/v1/assistants"),
                                   headers={"Authorization": "Bearer team-key"}) as response:  # fmt: skip
            body = await response.json()
    assert (response.status, response.headers["Allow"]) == (405, "GET, POST, DELETE")
    assert body["error"]["type"] == "invalid_request_error" and simulator_state.requests == []


@both_protocols
async def test_a_stream_relayed_to_its_done_is_complete_though_the_client_leaves_at_once(make_gateway, tmp_path):
    """The sync SDK closes its connection as soon as it reads `[DONE]`; this upstream ends its body
    40 ms later. The calls are complete runs all the same, to every observer: the audit's outcome
    (completed, client not gone), the request metrics (200, with a duration) and the SERVER span."""
    spans = InMemorySpanExporter()
    audit = tmp_path / "audit.jsonl"
    gateway = await make_gateway(span_exporter=spans, audit={"sink": "file", "path": str(audit)})
    client = gateway.sync_client()
    tail = {"X-Simulator-Tail-Ms": "40"}

    def three_streams() -> None:
        assistant = client.beta.assistants.create(model="gpt-4o")
        for _ in range(3):
            with client.beta.threads.create_and_run(assistant_id=assistant.id, stream=True, extra_headers=tail) as stream:
                assert [event.event for event in stream][-1] == "thread.run.completed"

    await asyncio.to_thread(three_streams)
    records = await gateway.runs.wait(3)
    assert [(r.status, r.client_gone, r.error_type) for r in records] == [("completed", False, None)] * 3
    outcomes = await audit_outcomes(audit, 3)
    assert [(o["status"], o["client_gone"]) for o in outcomes] == [("completed", False)] * 3
    runs = {"route": "/v1/threads/runs", "method": "POST"}
    text = await metrics_text(gateway)
    assert [s.value for s in series(text, "gateway_requests_total", **runs)] == [3]
    assert [s.labels["status"] for s in series(text, "gateway_requests_total", **runs)] == ["200"]
    assert [s.value for s in series(text, "gateway_request_duration_seconds_count", **runs)] == [3]
    served = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER and s.name == "POST /v1/threads/runs"]
    assert [(s.attributes["http.response.status_code"], "error.type" in s.attributes) for s in served] == [(200, False)] * 3


async def test_a_client_gone_mid_stream_is_counted_as_499(make_gateway):
    gateway = await make_gateway()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    slow = {"X-Simulator-Event-Delay-Ms": "30"}
    stream = await client.beta.threads.create_and_run(assistant_id=assistant.id, stream=True, extra_headers=slow)
    await stream.__anext__()
    await stream.close()
    (record,) = await gateway.runs.wait(1)
    assert record.client_gone
    runs = {"route": "/v1/threads/runs", "method": "POST"}
    for _ in range(50):  # the handler is cancelled as soon as the server notices the connection gone
        counted = series(await metrics_text(gateway), "gateway_requests_total", status="499", **runs)
        if counted:
            break
        await asyncio.sleep(0.02)
    assert [s.value for s in counted] == [1]


async def audit_outcomes(path: Path, count: int) -> list[dict[str, Any]]:
    """The audit's outcome records, once `count` have been written (it writes in the background)."""
    for _ in range(100):
        lines = [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
        outcomes = [line for line in lines if line["kind"] == "outcome"]
        if len(outcomes) >= count:
            return outcomes
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} outcome records not written: {outcomes}")


async def metrics_text(gateway: Gateway) -> str:
    async with aiohttp.ClientSession() as session:
        return await (await session.get(gateway.server.make_url("/metrics"))).text()
