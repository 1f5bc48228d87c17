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
from collections.abc import Iterable
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.domain import counted_status
from gateway.keys import CALLER, REQUEST_RUNTIME, RUNTIME
from gateway.runtime.labels import OTHER

OPERATION = "invoke_agent"  # an Assistants run is an agent invocation in the GenAI conventions
PROVIDER = "openai"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CHUNK_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)  # the conventions' advice
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
        self.budget_remaining, self.budget_limit = _budget_gauges(r, "tokens")
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
        self.budget_remaining_usd, self.budget_limit_usd = _budget_gauges(r, "usd")
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
        self.tool_calls = Counter(
            "gateway_tool_calls", "Tool calls of streamed runs by type, counted as their run steps complete.",
            ["tenant", "type"], registry=r,
        )  # fmt: skip
        self.requires_action = Counter(
            "gateway_requires_action", "Streamed runs that stopped for tool outputs (requires_action).", ["tenant"],
            registry=r,
        )  # fmt: skip
        self.requires_action_wait = Histogram(
            "gateway_requires_action_wait_seconds",
            "From a run's requires_action to its submit_tool_outputs call (both through this process).",
            ["tenant"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.queued = Histogram(
            "gateway_run_queued_seconds", "A streamed run's wait from queued to in_progress.", ["tenant"],
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.runs_started = Counter(
            "gateway_runs_started", "Runs created through the gateway: minus gateway_runs_total, the runs in flight.",
            ["tenant", "model"], registry=r,
        )  # fmt: skip
        self.unfinished = Counter(
            "gateway_runs_unsuccessful",
            "Runs that ended otherwise than completed, with why: last_error.code or incomplete_details.reason.",
            ["tenant", "status", "reason"], registry=r,
        )  # fmt: skip
        self.upstream_remaining = Gauge(
            "gateway_upstream_ratelimit_remaining",
            "The upstream's own rate-limit headroom (x-ratelimit-remaining-requests/-tokens) as its last answer said.",
            ["tenant", "kind"], registry=r, multiprocess_mode=_gauge_mode("livemostrecent"),
        )  # fmt: skip
        self._genai(r)

    def _genai(self, r: CollectorRegistry) -> None:
        """The GenAI conventions' histograms, labelled with the upstream's `server_address` (the configured
        host: bounded). `error_type` is on a call's duration only when it failed, as the conventions say:
        the two label sets are two histograms in side registries, exported as one family."""
        genai = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model",
                 "server_address"]  # fmt: skip
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "GenAI semconv: tokens used per run, by type.",
            [*genai, "gen_ai_token_type", "gateway_tenant"], buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        ok, failed = CollectorRegistry(), CollectorRegistry()
        duration = "GenAI semconv: a run call's duration (a non-streamed create's: it returns at queued)."
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds", duration, [*genai, "gateway_tenant"],
            buckets=DURATION_BUCKETS, registry=ok,
        )  # fmt: skip
        self.operation_duration_failed = Histogram(
            "gen_ai_client_operation_duration_seconds", duration, [*genai, "error_type", "gateway_tenant"],
            buckets=DURATION_BUCKETS, registry=failed,
        )  # fmt: skip
        r.register(_OneFamily(ok, failed))
        self.time_to_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "GenAI semconv: from sending a streamed run call upstream to the stream's first chunk.",
            [*genai, "gateway_tenant"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_per_output_chunk = Histogram(
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "GenAI semconv: a stream's mean time between output chunks (message deltas) after the first.",
            [*genai, "gateway_tenant"], buckets=CHUNK_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "GenAI semconv: time to a completed run's first message delta.",
            [*genai, "gateway_tenant"], buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip


class _OneFamily(Collector):
    """The metrics of several registries, one family per name: its series may carry different labels."""

    def __init__(self, *registries: CollectorRegistry) -> None:
        self._registries = registries

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for registry in self._registries:
            for metric in registry.collect():
                family = families.setdefault(metric.name, Metric(metric.name, metric.documentation, metric.type))
                family.samples.extend(metric.samples)
        return families.values()


def _budget_gauges(registry: CollectorRegistry, unit: str) -> tuple[Gauge, Gauge]:
    """A tenant's budgets per period in `unit` (tokens, usd): what is left, and the limit. Every worker's
    reconciler publishes them from the one shared ledger: the newest reading is right."""
    mode = _gauge_mode("livemostrecent")
    left = Gauge(f"gateway_budget_remaining_{unit}", f"What is left of a tenant's budget per period, in {unit}.",
                 ["tenant", "period"], registry=registry, multiprocess_mode=mode)  # fmt: skip
    limit = Gauge(f"gateway_budget_limit_{unit}", f"A tenant's budget per period, in {unit}.",
                  ["tenant", "period"], registry=registry, multiprocess_mode=mode)  # fmt: skip
    return left, limit


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
