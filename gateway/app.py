"""Build the aiohttp Application from a Config: routes, middlewares, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CONTENT_TYPE_LATEST

from . import middlewares
from .config import Config
from .admin import admin_reload, admin_usage
from .context import AUDIT, CONFIG_PATH, READINESS, RECORDER, RUNTIME, SESSION, STATE, Readiness
from .openai_types import RunRoute
from .openapi import openapi_endpoint
from .proxy import API_ROOT, passthrough, run_call
from .record import Recorder, RunLog
from .reconcile import reconciler
from .reload import reload_triggers
from .state.factory import open_state
from .runtime import Runtime, RuntimeHolder
from .telemetry.audit import AuditLog
from .telemetry.metrics import METRICS, Metrics, RunMetrics, count_requests, exposition
from .telemetry.run_spans import RunTracing
from .telemetry.tracing import Tracing
from .upstream import make_session


def build_app(
    config: Config,
    *,
    config_path: Path | None = None,
    observers: Sequence[object] = (),
    span_exporter: SpanExporter | None = None,
) -> web.Application:
    """`span_exporter` (tests) receives every span synchronously, instead of the `OTEL_*` exporters."""
    tracing = Tracing.from_config(config.telemetry.tracing, span_exporter)  # None: off, nothing installed
    traced = [tracing.middleware] if tracing else []  # outside `errors`: refused requests get spans too
    app = web.Application(
        middlewares=[middlewares.request_id, *traced, count_requests, middlewares.errors, middlewares.authenticate],
        client_max_size=config.listen.max_body_bytes,
    )
    runtime = app[RUNTIME] = RuntimeHolder(Runtime.from_config(config))
    if config_path is not None:
        app[CONFIG_PATH] = config_path
    metrics = app[METRICS] = Metrics()
    watching: list[object] = [RunLog(), RunMetrics(metrics, runtime)]
    if tracing is not None:
        watching.append(RunTracing(tracing, runtime))
        app.cleanup_ctx.append(tracing.lifecycle)  # first up, last down: spans of draining requests are flushed
    audit = _audit_log(config, metrics)
    if audit is not None:
        app[AUDIT] = audit
        watching.append(audit)
        app.cleanup_ctx.append(_audit_lifecycle)  # stops after the last handler has recorded its outcome
    app[RECORDER] = Recorder([*watching, *observers])
    app[READINESS] = Readiness()
    app.cleanup_ctx.extend([_upstream_pool, _shared_state, reconciler, reload_triggers])
    app.on_shutdown.append(_start_draining)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/openapi.json", openapi_endpoint)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/usage", admin_usage)
    threads = f"{API_ROOT}/threads"
    app.router.add_post(f"{threads}/runs", run_call(RunRoute.CREATE_THREAD_AND_RUN))
    app.router.add_post(f"{threads}/{{thread_id}}/runs", run_call(RunRoute.CREATE_RUN))
    app.router.add_post(
        f"{threads}/{{thread_id}}/runs/{{run_id}}/submit_tool_outputs", run_call(RunRoute.SUBMIT_TOOL_OUTPUTS)
    )
    app.router.add_route("*", f"{API_ROOT}/{{tail:.*}}", passthrough)
    return app


def _audit_log(config: Config, metrics: Metrics) -> AuditLog | None:
    if not config.audit.enabled:
        return None
    records = metrics.audit_records
    return AuditLog(
        config.audit,
        on_written=lambda n: records.labels("written").inc(n),
        on_failed=lambda n: records.labels("failed").inc(n),
    )


async def _audit_lifecycle(app: web.Application) -> AsyncIterator[None]:
    async with app[AUDIT]:  # stop() writes every record accepted before the writer ends
        yield


async def _upstream_pool(app: web.Application) -> AsyncIterator[None]:
    async with make_session(app[RUNTIME].current.config.upstream) as session:
        app[SESSION] = session
        app[READINESS].ready = True
        yield
        app[READINESS].ready = False


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    config = app[RUNTIME].current.config.state
    outages = app[METRICS].state_outages
    app[STATE] = open_state(
        config.backend,
        config.url,
        config.timeout_s,
        config.on_failure,
        config.max_owned_objects,
        on_outage=lambda transition: outages.labels(transition).inc(),
    )
    yield
    await app[STATE].close()


async def _start_draining(app: web.Application) -> None:
    app[READINESS].draining = True


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    if readiness.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not readiness.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=exposition(request.app[METRICS]), headers={"Content-Type": CONTENT_TYPE_LATEST})
