"""OpenTelemetry traces, following the HTTP and GenAI semantic conventions.

Per request (`/healthz`, `/readyz` and `/metrics` excepted), one SERVER span named
`{METHOD} {route template}` (`POST /v1/threads/runs`): the route template, never an id, keeps the
name and `url.path` low-cardinality; the ids are attributes (`gen_ai.conversation.id`, ...). It
continues a client's W3C `traceparent`/`tracestate`; its trace id is the request's `TRACE_ID`
and is bound into the log context. Each call to the upstream gets a CLIENT child span
(`POST /v1/threads/runs`: the upstream URL's path, ids as `{id}`; `server.address` = the upstream
host) whose `traceparent` replaces the client's on the upstream request; it comes from the pooled
session's aiohttp `TraceConfig`, so the forward stage does not know tracing exists. A 5xx sets
status ERROR and `error.type`; a refusal (4xx) keeps the status unset, as HTTP servers do, and run
calls name why in `error.type` (`policy_violation`).

Per run call, the GenAI attributes, child spans and events of the run: `run_spans`.

Exporters come from the standard `OTEL_*` variables (`OTEL_TRACES_EXPORTER`: otlp, console,
none; `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: http/protobuf, grpc; endpoints, headers, timeouts
and `OTEL_BSP_*` read by the SDK; `OTEL_TRACES_SAMPLER[_ARG]`; `OTEL_SERVICE_NAME`, default
`assistants-gateway`). One TracerProvider per app, never the global one, exporting in batches
off the event loop and flushed when the app stops. With tracing off nothing of this is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from importlib import metadata
from types import SimpleNamespace

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanProcessor,
)
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import Span, SpanKind, StatusCode, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from gateway.config import TracingConfig
from gateway.domain import CLIENT_CLOSED, counted_status
from gateway.errors import upstream_failure
from gateway.keys import CALLER, REQUEST_ID, TRACE_ID
from gateway.runtime.labels import OTHER
from gateway.telemetry.metrics import path_template, route_label

# The semantic conventions the spans and metrics follow (GenAI's included), pinned: every span's
# instrumentation scope carries this schema URL, so a backend can translate names across versions.
SCHEMA_URL = Schemas.V1_44_0.value  # the newest the pinned opentelemetry-semantic-conventions ships

DEFAULT_SERVICE_NAME = "assistants-gateway"
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes would drown the runs
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROTOCOLS = ("http/protobuf", "grpc")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_PROPAGATOR = TraceContextTextMapPropagator()

Attributes = dict[str, AttributeValue]


class Tracing:
    """The app's tracer: built by `lifecycle` (a cleanup_ctx), used by the middleware and `RunTracing`."""

    def __init__(self, exporters: tuple[str, ...], span_exporter: SpanExporter | None = None) -> None:
        self._exporters = exporters  # "console", "otlp:grpc", "otlp:http/protobuf"
        self._span_exporter = span_exporter
        self.tracer: trace.Tracer = trace.NoOpTracer()  # until the app starts
        self.middleware: Middleware = _server_spans(self)

    @classmethod
    def from_config(
        cls, config: TracingConfig, span_exporter: SpanExporter | None = None, env: Mapping[str, str] | None = None
    ) -> Tracing | None:
        """None when tracing is off. `span_exporter` (tests) replaces the `OTEL_*` exporters, synchronously."""
        env = os.environ if env is None else env
        if config.enabled == "off" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        if span_exporter is not None:
            return cls((), span_exporter)
        auto = config.enabled == "auto"
        if auto and not (env.get("OTEL_TRACES_EXPORTER", "").strip() or _endpoint_set(env)):
            return None
        exporters = _exporters_from(env)
        return None if auto and not exporters else cls(exporters)  # auto with OTEL_TRACES_EXPORTER=none: off

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        provider = TracerProvider(resource=service_resource(), shutdown_on_exit=False)
        for processor in self._processors():
            provider.add_span_processor(processor)
        self.tracer = provider.get_tracer("gateway", _version(), schema_url=SCHEMA_URL)
        yield
        # Flushing may wait on the network (and on a collector served by this very loop): not on the loop.
        await asyncio.get_running_loop().run_in_executor(None, provider.shutdown)

    def _processors(self) -> list[SpanProcessor]:
        if self._span_exporter is not None:
            return [SimpleSpanProcessor(self._span_exporter)]
        return [BatchSpanProcessor(_exporter(name)) for name in self._exporters]


def _endpoint_set(env: Mapping[str, str]) -> bool:
    return any(env.get(name, "").strip() for name in _ENDPOINT_VARS)


def _exporters_from(env: Mapping[str, str]) -> tuple[str, ...]:
    """`OTEL_TRACES_EXPORTER` and the OTLP protocol, checked now so a typo stops startup."""
    names = [name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    unknown = sorted(set(names) - {"otlp", "console", "none"})
    if unknown:
        raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {', '.join(unknown)} (otlp, console or none)")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or "http/protobuf"
    )
    if protocol not in _PROTOCOLS:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (http/protobuf or grpc)")
    chosen = [f"otlp:{protocol}" if name == "otlp" else name for name in names or ["otlp"]]
    if "otlp:grpc" in chosen and importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None:
        raise ValueError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the grpc extra: pip install 'assistants-gateway[grpc]'")
    return tuple(dict.fromkeys(name for name in chosen if name != "none"))


def _exporter(name: str) -> SpanExporter:
    """Endpoints, headers, certificates, compression and timeouts are read from `OTEL_*` by the exporter."""
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp:grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def service_resource() -> Resource:
    """`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` win; the service is otherwise `assistants-gateway`."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        own: Attributes = {SERVICE_NAME: DEFAULT_SERVICE_NAME}
        if (version := _version()) is not None:
            own[SERVICE_VERSION] = version
        resource = resource.merge(Resource(own))
    return resource


def _version() -> str | None:
    try:
        return metadata.version("assistants-gateway")
    except metadata.PackageNotFoundError:
        return None


# --- the SERVER span ------------------------------------------------------------------------------


# --- CLIENT spans: the upstream calls a traced request makes, through the session's TraceConfig ----

# The open CLIENT spans of the request being handled: set by the SERVER span's middleware (so calls
# outside a request, like the reconciler's polls, are not traced) and ended when the handler returns,
# once the upstream's answer has been relayed whole (or abandoned).
_CLIENT_SPANS: ContextVar[list[Span] | None] = ContextVar("gateway_client_spans", default=None)


def client_trace_config(tracing: Tracing) -> aiohttp.TraceConfig:
    """A CLIENT span per upstream request made inside a traced request; its context goes upstream."""
    config = aiohttp.TraceConfig()

    async def on_start(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
        spans = _CLIENT_SPANS.get()
        if spans is None:
            return
        params.headers.popall("tracestate", None)  # the client's goes on inside our context, if we continued its trace
        if not trace.get_current_span().get_span_context().trace_flags.sampled:
            # Sampled out (every sampler the SDK reads decides a child as its parent was decided): no
            # span, which would record nothing; the upstream is still told the trace, not sampled.
            _PROPAGATOR.inject(params.headers)
            return
        url, method = params.url, params.method
        attributes: Attributes = {"http.request.method": method, "server.address": url.host or "", "server.port": url.port or 0}
        span = tracing.tracer.start_span(f"{method} {path_template(url.path)}", kind=SpanKind.CLIENT, attributes=attributes)
        spans.append(span)
        ctx.span = span
        _PROPAGATOR.inject(params.headers, context=trace.set_span_in_context(span))

    async def on_end(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
        span: Span | None = getattr(ctx, "span", None)
        if span is None:
            return
        span.set_attribute("http.response.status_code", params.response.status)
        if params.response.status >= 400:  # a CLIENT span's error, unlike a server's
            span.set_attribute("error.type", str(params.response.status))
            span.set_status(StatusCode.ERROR)

    async def on_exception(
        session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        span: Span | None = getattr(ctx, "span", None)
        if span is not None:
            span.set_attribute("error.type", upstream_failure(params.exception).code or type(params.exception).__name__)
            span.set_status(StatusCode.ERROR)

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_exception)
    return config


def _server_spans(tracing: Tracing) -> Middleware:
    @web.middleware
    async def trace_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNTRACED_PATHS:
            return await handler(request)
        method = request.method if request.method in _METHODS else "_OTHER"
        span = tracing.tracer.start_span(
            method,
            context=_PROPAGATOR.extract(request.headers),
            kind=SpanKind.SERVER,
            attributes=_server_attributes(request, method),
        )
        trace_id = request[TRACE_ID] = format_trace_id(span.get_span_context().trace_id)
        client_spans: list[Span] = []
        opened = _CLIENT_SPANS.set(client_spans)
        response: web.StreamResponse | None = None
        failure: BaseException | None = None
        bound = structlog.contextvars.bind_contextvars(trace_id=trace_id)
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                response = await handler(request)
            return response
        except BaseException as exc:  # only cancellation gets here (the client left): `errors` answers the rest
            failure = exc
            raise
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            _CLIENT_SPANS.reset(opened)
            for client_span in client_spans:
                client_span.end()
            _end_server_span(span, request, method, response, failure)

    return trace_requests


def _server_attributes(request: web.Request, method: str) -> Attributes:
    url = request.url
    attributes: Attributes = {"http.request.method": method, "url.scheme": request.scheme, "url.path": request.path}
    if method == "_OTHER":
        attributes["http.request.method_original"] = request.method
    optional = {
        "server.address": url.host,
        "server.port": url.port,
        "client.address": request.remote,
        "user_agent.original": request.headers.get("User-Agent"),
        "gateway.request_id": request.get(REQUEST_ID),
    }
    attributes.update((key, value) for key, value in optional.items() if value is not None)
    return attributes


def _end_server_span(
    span: Span, request: web.Request, method: str, response: web.StreamResponse | None, failure: BaseException | None
) -> None:
    if span.is_recording():
        route = route_label(request)
        if route != OTHER:
            span.update_name(f"{method} {route}")
            span.set_attributes({"http.route": route})  # the template; `url.path` (set at start) is the real path
        caller = request.get(CALLER)
        if caller is not None:
            span.set_attribute("gateway.tenant", caller.tenant)
        known_error = isinstance(span, ReadableSpan) and "error.type" in (span.attributes or {})
        cancelled = isinstance(failure, asyncio.CancelledError)  # the client left: before its answer was whole, or after
        if cancelled or response is not None:
            status = counted_status(request, response)
            span.set_attribute("http.response.status_code", status)
            if status == CLIENT_CLOSED and cancelled and not known_error:
                span.set_attribute("error.type", type(failure).__qualname__)
            elif status >= 500:
                if not known_error:  # a run's own error type (upstream_unavailable, ...) is more precise
                    span.set_attribute("error.type", str(status))
                span.set_status(StatusCode.ERROR)
        elif failure is not None and not known_error:
            span.set_attribute("error.type", type(failure).__qualname__)
    span.end()
