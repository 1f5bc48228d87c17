"""OpenTelemetry traces through the SDK: the GenAI attributes, children and events of each run call,
trace context in and out, nothing at all when off, and a real OTLP/HTTP export."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from gateway.app import build_app
from gateway.config import TracingConfig, parse_config
from gateway.keys import RECORDER
from gateway.telemetry.run_spans import RunTracing
from gateway.telemetry.tracing import Tracing
from tests.conftest import API_KEY, Gateway, RunCollector
from tests.support import both_protocols, free_port, read_until, team_tenant

ENV = {"UPSTREAM_KEY": "sk-upstream", "TEAM_KEY": "sk-team"}
HI = {"messages": [{"role": "user", "content": "What is the weather?"}]}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
# The upstream CLIENT spans of a create-thread-and-run: forwarded as is, or behind the facade a
# conversation for the thread and the run's response.
CREATE_CALLS = {"assistants": ("POST /v1/threads/runs",), "responses": ("POST /v1/conversations", "POST /v1/responses")}
RUN_CALL = {"assistants": "POST /v1/threads/runs", "responses": "POST /v1/responses"}
POLL_CALL = {"assistants": "GET /v1/threads/{id}/runs/{id}", "responses": "GET /v1/responses/{id}"}
MS = 1_000_000  # ns: slack where a wall-clock span edge meets a perf_counter milestone


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(
    aiohttp_server: Callable[..., Awaitable[TestServer]], simulator: TestServer, spans: InMemorySpanExporter, protocol: str
) -> Callable[..., Awaitable[Gateway]]:
    """A gateway on the simulator whose spans land in `spans` (unless `exporter` says otherwise)."""

    async def start(
        upstream_url: str | None = None,
        env: dict[str, str] | None = None,
        exporter: Any = spans,
        **raw: Any,
    ) -> Gateway:
        upstream = {"base_url": upstream_url or str(simulator.make_url("/v1")), "protocol": protocol, **raw.pop("upstream", {})}
        config = parse_config({"upstream": upstream, **raw}, env=env or {})
        runs = RunCollector()
        app = build_app(config, observers=[runs], span_exporter=exporter)
        server = await aiohttp_server(app)  # handler_cancellation, as `serve` runs it
        return Gateway(server, config, runs)

    return start


def team(policy: dict[str, Any], **telemetry: Any) -> dict[str, Any]:
    return team_tenant(policy, **({"telemetry": telemetry} if telemetry else {}))


async def server_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The one SERVER span `name`, once it has ended (a run call's, just after its settlement)."""

    async def ended() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER and s.name == name]

    found = await read_until(ended, bool)
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def children(spans: InMemorySpanExporter, parent: ReadableSpan) -> dict[str, ReadableSpan]:
    parent_id = parent.context.span_id
    kids = [s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == parent_id]
    assert all(s.context.trace_id == parent.context.trace_id for s in kids)
    return {s.name: s for s in kids}


def agent_of(spans: InMemorySpanExporter, server: ReadableSpan) -> ReadableSpan:
    """The run call's `invoke_agent` CLIENT span, the SERVER span's child."""
    (agent,) = [s for s in children(spans, server).values() if s.name.startswith("invoke_agent")]
    assert agent.kind == SpanKind.CLIENT
    return agent


def events(span: ReadableSpan) -> dict[str, int]:
    return {event.name: event.timestamp for event in span.events}


def ordered(*times: int | None, slack: int = 0) -> bool:
    values = [t for t in times if t is not None]
    assert len(values) == len(times), times
    return all(a <= b + slack for a, b in zip(values, values[1:], strict=False))


@both_protocols
async def test_a_streamed_run_is_an_agent_invocation_with_its_milestones(traced, spans, protocol):
    gateway = await traced()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread=HI, model="gpt-4o", temperature=0.5, top_p=0.9, max_completion_tokens=300
    ) as stream:
        await stream.until_done()
        run = await stream.get_final_run()

    span = await server_span(spans, "POST /v1/threads/runs")
    agent = agent_of(spans, span)
    a = {**span.attributes, **agent.attributes}
    assert agent.name == f"invoke_agent {assistant.id}"
    assert a["gen_ai.operation.name"] == "invoke_agent" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.agent.id"] == assistant.id
    assert not any(key.startswith("gen_ai.") for key in span.attributes)  # the agent's, not the HTTP server's
    for each in (span, agent):  # the conventions they follow, pinned and exported
        assert each.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.44.0"
    upstream_at = agent.attributes
    assert (upstream_at["server.address"], upstream_at["server.port"]) == ("127.0.0.1", gateway.config.upstream.base_url.port)
    assert a["gen_ai.conversation.id"] == run.thread_id
    assert a["gen_ai.response.id"] == run.id
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == ("gpt-4o", run.model)
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"], a["gen_ai.request.max_tokens"]) == (
        0.5,
        0.9,
        300,
    )
    assert run.usage is not None and run.usage.prompt_tokens > 0
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        run.usage.prompt_tokens,
        run.usage.completion_tokens,
    )
    assert a["gen_ai.response.finish_reasons"] == ("stop",)  # the convention's words for `completed`
    assert a["gen_ai.output.type"] == "text" and 0 < a["gen_ai.response.time_to_first_chunk"] < 5
    assert (a["http.request.method"], a["http.route"], a["url.path"], a["http.response.status_code"]) == (
        "POST",
        "/v1/threads/runs",
        "/v1/threads/runs",
        200,
    )
    assert span.attributes["server.address"] == "127.0.0.1" and span.attributes["server.port"] == gateway.server.port
    assert (a["gateway.run.streamed"], a["gateway.run.broken"], a["gateway.run.client_gone"]) == (True, False, False)
    assert a["gateway.policy.decision"] == "none" and "gateway.policy.name" not in a
    assert "error.type" not in a and span.status.status_code == StatusCode.UNSET
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # no content by default
    assert gateway.runs.finished[-1].trace_id == format_trace_id(span.context.trace_id)

    kids = children(spans, span)
    assert set(kids) == {"gateway.policy", "gateway.admission", agent.name}
    assert set(children(spans, agent)) == set(CREATE_CALLS[protocol])  # SERVER → invoke_agent → upstream HTTP
    policy, admission, upstream = kids["gateway.policy"], kids["gateway.admission"], children(spans, agent)[RUN_CALL[protocol]]
    assert upstream.kind == SpanKind.CLIENT
    assert upstream.attributes["server.address"] == "127.0.0.1"
    assert upstream.attributes["http.response.status_code"] == 200
    at = events(agent)
    assert set(at) == {"gateway.first_byte", "gateway.first_message_delta", "gateway.run.completed"}
    assert ordered(span.start_time, policy.start_time, slack=MS)
    assert ordered(policy.start_time, policy.end_time, admission.start_time, admission.end_time)
    assert ordered(admission.end_time, upstream.start_time, slack=MS)
    assert ordered(upstream.start_time, at["gateway.first_byte"], slack=MS)
    assert ordered(at["gateway.first_byte"], at["gateway.first_message_delta"], at["gateway.run.completed"])
    assert ordered(at["gateway.run.completed"], upstream.end_time, span.end_time, slack=MS)


@both_protocols
async def test_a_polled_run_under_a_policy_that_clamps_and_shadows(traced, spans, protocol):
    policy = {
        "shadow_rules": ["models.*"],
        "models": {"allow": ["gpt-4o"]},
        "tokens": {"max_completion_tokens": {"max": 400, "action": "clamp"}},
    }
    gateway = await traced(**team(policy))
    client = gateway.async_client(api_key="sk-team")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    run = await client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread=HI, model="gpt-3.5-turbo", max_completion_tokens=500
    )
    await client.beta.threads.runs.poll(run.id, thread_id=run.thread_id, poll_interval_ms=5)

    span = await server_span(spans, "POST /v1/threads/runs")
    agent = agent_of(spans, span)
    a = {**span.attributes, **agent.attributes}
    assert (a["gen_ai.response.id"], a["gen_ai.conversation.id"]) == (run.id, run.thread_id)
    assert a["gen_ai.request.model"] == "gpt-3.5-turbo"
    assert a["gen_ai.request.max_tokens"] == 400  # what went upstream, after the clamp
    assert a["gateway.run.status"] == "queued" and "gen_ai.response.finish_reasons" not in a
    assert (a["gateway.tenant"], a["gateway.policy.name"], a["gateway.policy.decision"]) == ("team", "team", "modify")
    assert a["gateway.policy.shadowed"] == ("models.allow",)
    assert a["gateway.policy.modified"] == ("max_completion_tokens",)
    assert "gateway.policy.violations" not in a and a["gateway.run.streamed"] is False
    assert not events(agent)  # nothing streamed: no stream milestones
    assert set(children(spans, span)) == {"gateway.policy", "gateway.admission", agent.name}
    assert set(children(spans, agent)) == set(CREATE_CALLS[protocol])
    # The polls are plain pass-through calls: named by template (ids kept out of name and route);
    # `url.path` is the path as called.
    polls = [s for s in spans.get_finished_spans() if s.name == "GET /v1/threads/{id}/runs/{id}"]
    polls = [s for s in polls if s.kind == SpanKind.SERVER]
    assert polls
    assert polls[0].attributes["http.route"] == "/v1/threads/{id}/runs/{id}"
    assert polls[0].attributes["url.path"] == f"/v1/threads/{run.thread_id}/runs/{run.id}"
    assert "gen_ai.operation.name" not in polls[0].attributes
    assert {s.name for s in children(spans, polls[0]).values()} == {POLL_CALL[protocol]}


@both_protocols
async def test_a_policy_denial_is_traced_without_an_upstream_call(traced, spans, simulator_state):
    gateway = await traced(**team({"models": {"allow": ["gpt-4o"]}}))
    client = gateway.async_client(api_key="sk-team")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.PermissionDeniedError):
        await client.beta.threads.create_and_run(assistant_id=assistant.id, model="o3", thread=HI)

    span = await server_span(spans, "POST /v1/threads/runs")
    a = span.attributes
    assert a["http.response.status_code"] == 403
    assert span.status.status_code == StatusCode.UNSET  # a refusal is the client's error, not the server's
    assert a["error.type"] == "policy_violation"
    assert (a["gateway.policy.decision"], a["gateway.policy.violations"]) == ("deny", ("models.allow",))
    assert (a["gateway.policy.name"], a["gateway.tenant"]) == ("team", "team")
    kids = children(spans, span)
    assert set(kids) == {"gateway.policy"}  # neither admitted nor forwarded: no agent invoked
    assert kids["gateway.policy"].attributes["gateway.policy.decision"] == "deny"


async def test_an_unauthenticated_call_still_gets_a_span(traced, spans):
    gateway = await traced(**team({}))
    with pytest.raises(openai.AuthenticationError):
        await gateway.async_client(api_key="sk-wrong").beta.threads.create_and_run(assistant_id="asst_1")
    span = await server_span(spans, "POST /v1/threads/runs")
    assert span.attributes["http.response.status_code"] == 401 and "gateway.tenant" not in span.attributes


@both_protocols
async def test_an_upstream_500_marks_both_spans(traced, spans, protocol):
    gateway = await traced()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.InternalServerError):
        await client.beta.threads.create_and_run(assistant_id=assistant.id, extra_headers={"X-Simulator-Fault": "http-500"})
    span = await server_span(spans, "POST /v1/threads/runs")
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes["http.response.status_code"], span.attributes["error.type"]) == (500, "500")
    upstream = children(spans, agent_of(spans, span))[CREATE_CALLS[protocol][0]]  # the first call upstream fails
    assert upstream.status.status_code == StatusCode.ERROR
    assert upstream.attributes["http.response.status_code"] == 500


async def test_an_unreachable_upstream_is_a_502_with_its_kind(traced, spans):
    port = free_port()
    gateway = await traced(upstream_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(openai.APIStatusError) as caught:
        await gateway.async_client().beta.threads.create_and_run(assistant_id="asst_1")
    assert caught.value.status_code == 502
    span = await server_span(spans, "POST /v1/threads/runs")
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes["http.response.status_code"], span.attributes["error.type"]) == (
        502,
        "upstream_unavailable",
    )
    upstream = children(spans, agent_of(spans, span))["POST /v1/threads/runs"]
    assert (upstream.attributes["error.type"], upstream.attributes["server.port"]) == ("upstream_unavailable", port)
    assert "http.response.status_code" not in upstream.attributes


async def test_a_broken_stream_is_an_error_though_the_answer_was_200(traced, spans):
    gateway = await traced()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.APIError):
        async with client.beta.threads.create_and_run_stream(
            assistant_id=assistant.id, thread=HI, extra_headers={"X-Simulator-Fault": "drop:5"}
        ) as stream:
            await stream.until_done()
    span = await server_span(spans, "POST /v1/threads/runs")
    assert span.attributes["http.response.status_code"] == 200
    assert (span.attributes["gateway.run.broken"], span.attributes["error.type"]) == (True, "stream_broken")
    assert span.status.status_code == StatusCode.ERROR


@both_protocols
async def test_a_client_that_walks_away_ends_every_span(traced, spans, protocol):
    gateway = await traced()
    assistant = await gateway.async_client().beta.assistants.create(model="gpt-4o")
    body = {"assistant_id": assistant.id, "thread": HI, "stream": True}
    slow = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": "assistants=v2", "X-Simulator-Event-Delay-Ms": "50"}
    async with aiohttp.ClientSession() as session:
        response = await session.post(gateway.server.make_url("/v1/threads/runs"), json=body, headers=slow)
        assert response.status == 200
        await response.content.readuntil(b"\n\n")
        response.close()
    span = await server_span(spans, "POST /v1/threads/runs")  # (it ends as the handler unwinds)
    assert span.attributes["gateway.run.client_gone"] is True and span.attributes["http.response.status_code"] == 499
    assert span.attributes["error.type"] == "CancelledError" and span.status.status_code == StatusCode.UNSET
    agent = agent_of(spans, span)
    upstream = children(spans, agent)[RUN_CALL[protocol]]
    assert upstream.end_time is not None and upstream.end_time <= span.end_time and agent.end_time <= span.end_time


async def test_a_client_trace_continues_and_reaches_the_upstream(traced, spans, simulator_state):
    gateway = await traced()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await client.beta.threads.create_and_run(
            assistant_id=assistant.id, extra_headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
        )
    span = await server_span(spans, "POST /v1/threads/runs")
    assert format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None and format_span_id(span.parent.span_id) == PARENT_ID and span.parent.is_remote
    upstream = children(spans, agent_of(spans, span))["POST /v1/threads/runs"]
    sent = simulator_state.requests[-1].headers
    assert sent["traceparent"] == f"00-{TRACE_ID}-{format_span_id(upstream.context.span_id)}-01"
    assert sent.getall("traceparent") == [sent["traceparent"]] and sent["tracestate"] == "vendor=abc"
    run_lines = [line for line in logs if line["event"] == "run_call"]
    assert run_lines and run_lines[0]["trace_id"] == TRACE_ID  # from the record and from the log context


async def test_a_new_trace_starts_without_a_client_traceparent(traced, spans, simulator_state):
    gateway = await traced()
    await gateway.async_client().beta.assistants.list()
    span = await server_span(spans, "GET /v1/assistants")
    upstream = children(spans, span)["GET /v1/assistants"]
    trace_id, span_id = format_trace_id(span.context.trace_id), format_span_id(upstream.context.span_id)
    assert span.parent is None
    version, sent_trace, sent_span, flags = simulator_state.requests[-1].headers["traceparent"].split("-")
    assert (version, sent_trace, sent_span, int(flags, 16) & 1) == ("00", trace_id, span_id, 1)  # sampled


async def test_a_trace_sampled_out_by_the_client_reaches_the_upstream_unsampled(traced, spans, simulator_state):
    """The client's `traceparent` says not sampled: nothing is recorded, and the upstream is told the
    same trace, still not sampled, with the client's `tracestate`."""
    gateway = await traced()
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    unsampled = TRACEPARENT[:-2] + "00"
    await client.beta.threads.create_and_run(
        assistant_id=assistant.id, extra_headers={"traceparent": unsampled, "tracestate": "vendor=abc"}
    )
    sent = simulator_state.requests[-1].headers
    version, sent_trace, sent_span, flags = sent["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", TRACE_ID, "00") and sent_span != PARENT_ID
    assert sent.getall("traceparent") == [sent["traceparent"]] and sent["tracestate"] == "vendor=abc"
    assert {s.name for s in spans.get_finished_spans()} == {"POST /v1/assistants"}  # (its SERVER and CLIENT spans)
    assert gateway.runs.finished[-1].trace_id == TRACE_ID


async def test_probes_are_not_traced(traced, spans):
    gateway = await traced()
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await session.get(gateway.server.make_url(path))).status == 200
    assert spans.get_finished_spans() == ()


async def test_content_is_captured_only_when_asked(traced, spans):
    gateway = await traced(telemetry={"tracing": {"capture_content": True}})
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    async with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread=HI, instructions="Be brief."
    ) as stream:
        await stream.until_done()
    span = agent_of(spans, await server_span(spans, "POST /v1/threads/runs"))
    inputs = orjson.loads(span.attributes["gen_ai.input.messages"])
    assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "What is the weather?"}]}]
    assert orjson.loads(span.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    outputs = orjson.loads(span.attributes["gen_ai.output.messages"])
    assert outputs[0]["role"] == "assistant" and outputs[0]["parts"][0]["content"]
    assert outputs[0]["finish_reason"] == "stop"


async def test_tracing_off_installs_nothing(traced, spans, simulator_state):
    gateway = await traced(telemetry={"tracing": {"enabled": "off"}})
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    await client.beta.threads.create_and_run(
        assistant_id=assistant.id, extra_headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    )
    sent = simulator_state.requests[-1].headers
    assert (sent["traceparent"], sent["tracestate"]) == (TRACEPARENT, "vendor=abc")  # passed through untouched
    await client.beta.threads.create_and_run(assistant_id=assistant.id)
    assert "traceparent" not in simulator_state.requests[-1].headers
    assert spans.get_finished_spans() == ()
    assert gateway.runs.finished[-1].trace_id is None
    assert len(gateway.app.middlewares) == 5  # request_id, count_requests, errors, authenticate, one_spelling
    assert not any(isinstance(o, RunTracing) for o in gateway.app[RECORDER].observers)


@pytest.mark.parametrize(
    ("enabled", "env", "on"),
    [
        ("auto", {}, False),
        ("auto", {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, False),  # not ours to judge while off
        ("auto", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ("auto", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ("auto", {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"}, False),
        ("auto", {"OTEL_TRACES_EXPORTER": "console"}, True),
        ("auto", {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ("auto", {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ("on", {}, True),
        ("on", {"OTEL_SDK_DISABLED": "TRUE"}, False),
        ("off", {"OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_when_tracing_is_on(enabled: str, env: dict[str, str], on: bool):
    assert (Tracing.from_config(TracingConfig(enabled=enabled), env=env) is not None) is on


@pytest.mark.parametrize(
    "env",
    [{"OTEL_TRACES_EXPORTER": "zipkin"}, {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}],
)
def test_an_unusable_exporter_setting_stops_startup(env: dict[str, str]):
    with pytest.raises(ValueError, match="OTEL_"):
        Tracing.from_config(TracingConfig(enabled="on"), env=env)


async def test_spans_are_exported_over_otlp_http(traced, aiohttp_server, monkeypatch):
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    receiver = await aiohttp_server(collector)
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", str(receiver.make_url("/v1/traces")))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only the shutdown flush sends

    gateway = await traced(exporter=None)  # auto: on, since an OTLP endpoint is set
    client = gateway.async_client()
    assistant = await client.beta.assistants.create(model="gpt-4o")
    run = await client.beta.threads.create_and_run(assistant_id=assistant.id, thread=HI, model="gpt-4o")
    assert not received
    await asyncio.wait_for(gateway.server.close(), 10)  # cleanup: the provider flushes and shuts down

    resource_spans = [rs for request in received for rs in request.resource_spans]
    service = {a.key: a.value.string_value for rs in resource_spans for a in rs.resource.attributes}
    assert service["service.name"] == "assistants-gateway"
    exported = [span for rs in resource_spans for scope in rs.scope_spans for span in scope.spans]
    runs = [s for s in exported if any(a.key == "gen_ai.operation.name" for a in s.attributes)]
    assert len(runs) == 1
    attributes = {a.key: a.value for a in runs[0].attributes}
    assert runs[0].name == f"invoke_agent {assistant.id}" and runs[0].kind == runs[0].SPAN_KIND_CLIENT
    assert attributes["gen_ai.operation.name"].string_value == "invoke_agent"
    assert attributes["gen_ai.response.id"].string_value == run.id
    assert attributes["gen_ai.agent.id"].string_value == assistant.id
    assert attributes["gen_ai.request.model"].string_value == "gpt-4o"
    (server,) = [s for s in exported if s.span_id == runs[0].parent_span_id]
    assert server.name == "POST /v1/threads/runs" and server.kind == server.SPAN_KIND_SERVER
    assert {s.name for s in exported if s.parent_span_id == server.span_id} == {"gateway.policy", "gateway.admission", runs[0].name}
    assert {s.name for s in exported if s.parent_span_id == runs[0].span_id} == {"POST /v1/threads/runs"}
