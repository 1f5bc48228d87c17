"""Prometheus metrics: one registry per app (no process globals), served on GET /metrics.

With several worker processes (`serve --workers N`), PROMETHEUS_MULTIPROC_DIR is set before
prometheus_client is imported: every value then lives in a per-process file there, and /metrics in
any worker shows the sum over all of them (gauges as their `multiprocess_mode` says).

Label values are bounded by design: tenants and models come from the config or collapse into
`other`, routes are templates, event types a known list; no id and no user input is ever a label.
The GenAI histograms follow the OpenTelemetry GenAI semantic conventions, with their advised buckets.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.config.pricing import usd
from gateway.domain import BudgetReading, RunRecord, SSEEvent, Usage, counted_status
from gateway.keys import CALLER, REQUEST_RUNTIME, RUNTIME
from gateway.runtime import RuntimeHolder
from gateway.runtime.auth import PASSTHROUGH
from gateway.runtime.labels import OTHER, Labels

OPERATION = "invoke_agent"  # an Assistants run is an agent invocation in the GenAI conventions
PROVIDER = "openai"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
EVENT_TYPES = frozenset(
    f"thread.{name}"
    for name in (
        "created", "run.created", "run.queued", "run.in_progress", "run.requires_action", "run.completed",
        "run.incomplete", "run.failed", "run.cancelling", "run.cancelled", "run.expired", "run.step.created",
        "run.step.in_progress", "run.step.delta", "run.step.completed", "run.step.failed", "run.step.cancelled",
        "run.step.expired", "message.created", "message.in_progress", "message.delta", "message.completed",
        "message.incomplete",
    )
) | {"error", "done"}  # fmt: skip
UPSTREAM_ERROR_KINDS = ("unavailable", "timeout", "server_error", "rate_limited", "stream_broken", "error_event")
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
# Ids of the Assistants API and, behind the facade, of the Responses + Conversations API (a thread's id
# is its conversation's, `conv_…`).
_ID_SEGMENT = re.compile(r"^(thread|run|msg|asst|step|call|vs|file|batch|conv|resp|fc|rs|ci|fs|cntr|cfile)[_-][A-Za-z0-9_-]+$")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests", "Requests by route template, method, status and tenant.",
            ["route", "method", "status", "tenant"], registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "gateway_request_duration_seconds", "Whole request time, streams included.",
            ["route", "method"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.overhead = Histogram(
            "gateway_overhead_seconds", "Time the gateway spends on a run call before asking the upstream.",
            ["route"], buckets=FAST_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_ttfb = Histogram(
            "gateway_upstream_ttfb_seconds", "From arrival to the upstream's first body byte.",
            ["route"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.policy_decisions = Counter(
            "gateway_policy_decisions", "Policy decisions by tenant, decision (allow, deny, shadow_deny, modify) and rule.",
            ["tenant", "decision", "rule"], registry=r,
        )  # fmt: skip
        self.rate_limit_hits = Counter(
            "gateway_rate_limit_hits", "Calls refused by a limit.", ["tenant", "limit"], registry=r
        )
        # Every worker's reconciler publishes the budgets from the one shared ledger: the newest is right.
        self.budget_remaining = Gauge(
            "gateway_budget_remaining_tokens", "Tokens left in a tenant's budget.", ["tenant", "period"], registry=r,
            multiprocess_mode=_gauge_mode("livemostrecent"),
        )  # fmt: skip
        self.budget_limit = Gauge(
            "gateway_budget_limit_tokens", "A tenant's token budget per period.", ["tenant", "period"], registry=r,
            multiprocess_mode=_gauge_mode("livemostrecent"),
        )  # fmt: skip
        self.run_decisions = Counter(
            "gateway_run_decisions", "Run calls by tenant and policy decision (allow, modify, deny, none).",
            ["tenant", "decision"], registry=r,
        )  # fmt: skip
        self.streams = Counter("gateway_streams", "Run streams started.", ["tenant"], registry=r)
        self.state_outages = Counter(
            "gateway_state_outages", "Shared-state (Redis) outages began (down) and ended (up).", ["transition"],
            registry=r,
        )  # fmt: skip
        self.runs = Counter(
            "gateway_runs", "Runs by tenant, model and the status they ended in, each once, as the ledger has them.", ["tenant", "model", "status"],
            registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "gateway_tokens", "Tokens of ended runs by tenant, model and type (input, output): the ledger's.", ["tenant", "model", "type"],
            registry=r,
        )  # fmt: skip
        self.cost = Counter(
            "gateway_cost_usd", "What ended runs cost in USD at the price table, by tenant and model: the ledger's.",
            ["tenant", "model"], registry=r,
        )  # fmt: skip
        self.unpriced_runs = Counter(
            "gateway_unpriced_runs", "Ended runs whose model has no price (counted at $0): price them under `pricing:`.",
            ["tenant", "model"], registry=r,
        )  # fmt: skip
        self.budget_remaining_usd = Gauge(
            "gateway_budget_remaining_usd", "USD left in a tenant's budget.", ["tenant", "period"], registry=r,
            multiprocess_mode=_gauge_mode("livemostrecent"),
        )  # fmt: skip
        self.budget_limit_usd = Gauge(
            "gateway_budget_limit_usd", "A tenant's USD budget per period.", ["tenant", "period"], registry=r,
            multiprocess_mode=_gauge_mode("livemostrecent"),
        )  # fmt: skip
        self.active_streams = Gauge(
            "gateway_active_streams", "Run streams being relayed now.", ["tenant"], registry=r,
            multiprocess_mode=_gauge_mode("livesum"),  # each worker counts its own; a dead one's are gone
        )  # fmt: skip
        self.stream_events = Counter("gateway_stream_events", "Relayed stream events by type.", ["type"], registry=r)
        self.broken_streams = Counter(
            "gateway_broken_streams", "Streams the upstream broke off before the run ended.", ["tenant"], registry=r
        )
        self.drained_streams = Counter(
            "gateway_drained_streams", "Streams the gateway cut, still open at its drain deadline (SIGTERM).",
            ["tenant"], registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream trouble by kind (unavailable, timeout, server_error, rate_limited, stream_broken, error_event).",
            ["kind"], registry=r,
        )  # fmt: skip
        self.audit_records = Counter(
            "gateway_audit_records", "Audit records by result (written, failed).", ["result"], registry=r
        )
        self.config_reloads = Counter(
            "gateway_config_reloads", "Config reloads by result (ok, error).", ["result"], registry=r
        )
        # Series with a fixed set of label values start at 0, so a first event shows up in increase().
        for counter, values in (
            (self.audit_records, ("written", "failed")),
            (self.config_reloads, ("ok", "error")),
            (self.upstream_errors, UPSTREAM_ERROR_KINDS),
            (self.state_outages, ("down", "up")),
        ):
            for label in values:
                counter.labels(label)
        genai = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model"]
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "GenAI semconv: tokens used per run, by type.",
            [*genai, "gen_ai_token_type", "gateway_tenant"], buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds", "GenAI semconv: run call duration.",
            [*genai, "error_type", "gateway_tenant"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "GenAI semconv: time to the first message delta.",
            [*genai, "gateway_tenant"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip


def _gauge_mode(mode: Literal["livesum", "livemostrecent"]) -> Literal["all", "livesum", "livemostrecent"]:
    """`mode` with several workers; prometheus_client's default alone, so one process is unchanged."""
    return mode if MULTIPROCESS_DIR else "all"


def exposition(metrics: Metrics) -> bytes:
    """The /metrics body: this process's registry, or with several workers the sum of all of them."""
    if MULTIPROCESS_DIR is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()  # per scrape, as prometheus_client's multiprocess docs do
    MultiProcessCollector(registry, MULTIPROCESS_DIR)
    return generate_latest(registry)


class RunMetrics:
    """The run observer behind the run, token, stream, policy and GenAI metrics."""

    def __init__(self, metrics: Metrics, runtime: RuntimeHolder) -> None:
        self.m = metrics
        self._runtime = runtime
        self._start_series()

    def _start_series(self) -> None:
        """Each tenant's rare series start at 0, so its first violation of a rule (or first stream cut
        at drain) shows in increase(): a series born at its first increment shows no increase."""
        config = self._runtime.current.config
        for tenant in config.tenants or (PASSTHROUGH,):
            self.m.drained_streams.labels(tenant)
            policy = config.policy_for(tenant)
            if policy is not None:
                for rule in policy.judged_rules():
                    self.m.policy_decisions.labels(tenant, "shadow_deny" if policy.is_shadowed(rule) else "deny", rule)

    @property
    def labels(self) -> Labels:
        return self._runtime.current.labels

    def run_responded(self, record: RunRecord) -> None:
        if record.streamed:
            tenant = self.labels.tenant(record.tenant)
            self.m.active_streams.labels(tenant).inc()
            self.m.streams.labels(tenant).inc()

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        self.m.stream_events.labels(event.event if event.event in EVENT_TYPES else OTHER).inc()

    def config_reloaded(self, ok: bool) -> None:
        self.m.config_reloads.labels("ok" if ok else "error").inc()
        if ok:  # new tenants, rules
            self._start_series()

    def budget_read(self, reading: BudgetReading) -> None:
        usd = reading.unit == "usd"  # in µUSD: the gauges say dollars
        limit_gauge, remaining_gauge = (
            (self.m.budget_limit_usd, self.m.budget_remaining_usd) if usd else (self.m.budget_limit, self.m.budget_remaining)
        )
        scale = 1e-6 if usd else 1
        for period, limit in reading.limits.items():
            limit_gauge.labels(reading.tenant, period).set(limit * scale)
        for period, remaining in reading.remaining.items():
            remaining_gauge.labels(reading.tenant, period).set(remaining * scale)

    def state_changed(self, transition: str) -> None:
        self.m.state_outages.labels(transition).inc()

    def run_finished(self, record: RunRecord) -> None:
        m, tenant = self.m, self.labels.tenant(record.tenant)
        if record.refused_by is not None:
            m.rate_limit_hits.labels(tenant, record.refused_by).inc()
        if record.streamed and record.upstream_status is not None:
            m.active_streams.labels(tenant).dec()
        self._count_decision(record, tenant)
        if record.forwarded_s is not None:
            m.overhead.labels(record.route).observe(record.forwarded_s)
        if record.ttfb_s is not None:
            m.upstream_ttfb.labels(record.route).observe(record.ttfb_s)
        kind = _upstream_error_kind(record)
        if kind is not None:
            m.upstream_errors.labels(kind).inc()
        if record.broken:
            m.broken_streams.labels(tenant).inc()
        if record.drained:
            m.drained_streams.labels(tenant).inc()
        if record.decision == "deny":
            return
        requested = self.labels.model(record.requested_model or record.model)
        response = self.labels.model(record.model)
        genai = (OPERATION, PROVIDER, requested, response)
        m.operation_duration.labels(*genai, record.error_type or "", tenant).observe(record.duration_s or 0.0)
        if record.first_delta_s is not None:
            m.time_to_first_token.labels(*genai, tenant).observe(record.first_delta_s)
        if record.usage is not None:
            for kind, count in (("input", record.usage.prompt_tokens), ("output", record.usage.completion_tokens)):
                m.token_usage.labels(*genai, kind, tenant).observe(count)

    def run_settled(self, tenant: str, model: str, status: str, usage: Usage | None, cost: int | None) -> None:
        """Runs, tokens and dollars as the ledger has them: each run once, when it ends, however it was
        seen to (a call's stream, a poll, a run list, the reconciler); a refused call made no run."""
        tenant, model = self.labels.tenant(tenant), self.labels.model(model)
        self.m.runs.labels(tenant, model, status).inc()
        if usage is not None:
            for kind, count in (("input", usage.prompt_tokens), ("output", usage.completion_tokens)):
                self.m.tokens.labels(tenant, model, kind).inc(count)
            if cost is None:
                self.m.unpriced_runs.labels(tenant, model).inc()
            self.m.cost.labels(tenant, model).inc(usd(cost or 0))

    def _count_decision(self, record: RunRecord, tenant: str) -> None:
        self.m.run_decisions.labels(tenant, record.decision).inc()
        if record.decision == "none":
            return
        count = self.m.policy_decisions.labels
        for rule in record.violations:
            count(tenant, "deny", rule).inc()
        for rule in record.shadowed:
            count(tenant, "shadow_deny", rule).inc()
        for param in record.modified:
            count(tenant, "modify", f"tokens.{param}").inc()
        if record.decision in ("allow", "modify") and not record.shadowed and not record.modified:
            count(tenant, "allow", "").inc()


def _upstream_error_kind(record: RunRecord) -> str | None:
    if record.broken:
        return "stream_broken"
    kinds = {"upstream_unavailable": "unavailable", "upstream_timeout": "timeout", "error_event": "error_event"}
    if record.error_type in kinds:
        return kinds[record.error_type]
    if record.upstream_status == 429:
        return "rate_limited"
    if record.upstream_status is not None and record.upstream_status >= 500:
        return "server_error"
    return None


def route_label(request: web.Request) -> str:
    """The route template; pass-through paths with ids replaced by `{id}`."""
    info = request.match_info
    if info.route.resource is None:
        return OTHER
    canonical = info.route.resource.canonical
    if "tail" not in info:
        return canonical
    parts = [("{id}" if _ID_SEGMENT.match(part) else part) for part in info["tail"].split("/")[:5]]
    allowed = request[REQUEST_RUNTIME].config.upstream.allowed_paths if REQUEST_RUNTIME in request else ()
    if not parts or f"/{parts[0]}" not in allowed:
        return "/v1/" + OTHER
    return "/v1/" + "/".join(part if part == "{id}" or part.isidentifier() else OTHER for part in parts)


def path_template(path: str) -> str:
    """A URL path with its id segments (`thread_…`, `run_…`) as `{id}`: bounded, no ids in span names."""
    return "/".join("{id}" if _ID_SEGMENT.match(part) else part for part in path.split("/"))


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        response = await handler(request)
    except asyncio.CancelledError:  # the client left: before its answer was whole (499), or just after
        _count(request, counted_status(request, None), started)
        raise
    _count(request, counted_status(request, response), started)
    return response


def _count(request: web.Request, status: int, started: float) -> None:
    metrics = request.app[METRICS]
    route, method = route_label(request), request.method if request.method in _METHODS else OTHER
    caller = request.get(CALLER)
    if caller is not None:
        tenant = request.app[RUNTIME].current.labels.tenant(caller.tenant)
    else:  # the gateway's own endpoints need no key; an API call without a caller was refused one
        tenant = "unauthenticated" if request.path.startswith("/v1/") else "none"
    metrics.requests.labels(route, method, str(status), tenant).inc()
    metrics.request_duration.labels(route, method).observe(time.perf_counter() - started)


_METHODS = frozenset({"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"})
METRICS = web.AppKey("metrics", Metrics)
