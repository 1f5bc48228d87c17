"""The composition root: build the aiohttp Application from a Config.

Middlewares (cross-cutting, every request), the run calls' and the pass-through's routes (the
stages are in `pipeline/run_call.py`), the observers that hear run and gateway events (metrics,
traces, the audit log, the debug run log), and the lifecycles (`cleanup_ctx`): tracing first up and
last down, then the audit writer, the upstream pool, the shared state, the reconciler and reloads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from aiohttp import web
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.config import Config
from gateway.domain import Recorder
from gateway.http.drain import DrainDeadline
from gateway.http.upstream import make_session
from gateway.keys import (
    AUDIT_ROOM,
    AUDIT_WRITABLE,
    CONFIG_PATH,
    DRAIN,
    FAILED_ATTEMPTS,
    READINESS,
    RECORDER,
    RUNTIME,
    SESSION,
    STATE,
    Readiness,
)
from gateway.ops.admin import admin_reload, admin_usage
from gateway.ops.health import healthz, readyz
from gateway.ops.metrics_site import serve_metrics
from gateway.ops.openapi import openapi_endpoint
from gateway.ops.reconcile import reconciler
from gateway.ops.reload import reload_triggers
from gateway.pipeline import middlewares
from gateway.pipeline.forward import API_ROOT
from gateway.pipeline.passthrough import passthrough
from gateway.pipeline.run_call import run_call
from gateway.runtime import Runtime, RuntimeHolder
from gateway.runtime.attempts import FailedAttempts
from gateway.schema.requests import RunRoute
from gateway.state.factory import open_state
from gateway.telemetry.audit import AuditLog
from gateway.telemetry.metrics import METRICS, Metrics, count_requests, exposition
from gateway.telemetry.run_metrics import RunMetrics
from gateway.telemetry.run_spans import RunTracing
from gateway.telemetry.runlog import RunLog
from gateway.telemetry.tracing import Tracing, client_trace_config

Lifecycle = Callable[[web.Application], AsyncIterator[None]]


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
        middlewares=[middlewares.request_id, *traced, count_requests, middlewares.errors, middlewares.authenticate,
                     middlewares.one_spelling],  # fmt: skip
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
    if config.audit.enabled:
        records = metrics.audit_records
        audit = AuditLog(
            config.audit,
            on_written=lambda n: records.labels("written").inc(n),
            on_failed=lambda n: records.labels("failed").inc(n),
        )
        app[AUDIT_ROOM] = audit.room
        if config.audit.on_failure == "fail_closed":
            app[AUDIT_WRITABLE] = lambda: audit.writable
        watching.append(audit)
        app.cleanup_ctx.append(_lifecycle_of(audit))  # stops after the last handler has recorded its outcome
    app[RECORDER] = Recorder([*watching, *observers])
    app[READINESS] = Readiness()
    app[FAILED_ATTEMPTS] = FailedAttempts()  # the app's, not the runtime's: a reload does not forgive them
    app[DRAIN] = DrainDeadline(config.listen.drain_timeout_s)  # the start-up value, as aiohttp's own timeout
    app.cleanup_ctx.extend([_upstream_pool(tracing), _shared_state, reconciler, reload_triggers])
    app.on_shutdown.append(_start_draining)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    serve_metrics(app, config, lambda: exposition(metrics))  # here, or on telemetry.metrics.port
    app.router.add_get("/openapi.json", openapi_endpoint)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/usage", admin_usage)
    threads = f"{API_ROOT}/threads"
    run_body = middlewares.expect_continue(lambda config: config.listen.max_body_bytes)
    app.router.add_post(f"{threads}/runs", run_call(RunRoute.CREATE_THREAD_AND_RUN), expect_handler=run_body)
    app.router.add_post(f"{threads}/{{thread_id}}/runs", run_call(RunRoute.CREATE_RUN), expect_handler=run_body)
    app.router.add_post(
        f"{threads}/{{thread_id}}/runs/{{run_id}}/submit_tool_outputs", run_call(RunRoute.SUBMIT_TOOL_OUTPUTS),
        expect_handler=run_body,
    )  # fmt: skip
    upload = middlewares.expect_continue(lambda config: config.listen.max_upload_bytes)
    app.router.add_route("*", f"{API_ROOT}/{{tail:.*}}", passthrough, expect_handler=upload)
    return app


def _lifecycle_of(audit: AuditLog) -> Lifecycle:
    async def audit_writer(app: web.Application) -> AsyncIterator[None]:
        async with audit:  # stop() writes every record accepted before the writer ends
            yield

    return audit_writer


def _upstream_pool(tracing: Tracing | None) -> Lifecycle:
    async def upstream_pool(app: web.Application) -> AsyncIterator[None]:
        trace_configs = [client_trace_config(tracing)] if tracing is not None else []
        async with make_session(app[RUNTIME].current.config.upstream, trace_configs) as session:
            app[SESSION] = session
            app[READINESS].ready = True
            yield
            app[READINESS].ready = False

    return upstream_pool


async def _shared_state(app: web.Application) -> AsyncIterator[None]:
    config = app[RUNTIME].current.config.state
    app[STATE] = open_state(
        config.backend,
        config.url,
        config.timeout_s,
        config.on_failure,
        config.max_owned_objects,
        on_outage=app[RECORDER].state_changed,
        cluster=config.cluster,
    )
    yield
    await app[STATE].close()


async def _start_draining(app: web.Application) -> None:
    app[READINESS].draining = True
    app[DRAIN].start()
