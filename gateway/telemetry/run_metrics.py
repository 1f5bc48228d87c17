"""The run observer behind the run, token, money, stream, policy and GenAI metrics (`metrics.Metrics`).

It hears the record stage's events (`domain.Recorder`) and only counts: every label value is bounded
(tenants and models from the config or `other`, known kinds, codes and reasons or `other`).
"""

from __future__ import annotations

from cachetools import LRUCache

from gateway.config.pricing import usd
from gateway.domain import BudgetReading, RunRecord, RunSettled, SSEEvent
from gateway.runtime import RuntimeHolder
from gateway.runtime.auth import PASSTHROUGH
from gateway.runtime.labels import OTHER, Labels
from gateway.telemetry.metrics import EVENT_TYPES, OPERATION, PROVIDER, Metrics

TOOL_TYPES = frozenset({"function", "code_interpreter", "file_search"})
# Why a run did not complete: `last_error.code` (failed) and `incomplete_details.reason` (incomplete).
REASONS = frozenset(
    {"server_error", "rate_limit_exceeded", "invalid_prompt", "max_completion_tokens", "max_prompt_tokens",
     "content_filter", "run_cancelled", "run_expired"}
)  # fmt: skip
_PAUSED_REMEMBERED = 10_000  # runs waiting for tool outputs whose pause this process remembers


class RunMetrics:
    def __init__(self, metrics: Metrics, runtime: RuntimeHolder) -> None:
        self.m = metrics
        self._runtime = runtime
        # run id → when it stopped for tool outputs (perf_counter), to time the wait until they come
        self._paused: LRUCache[str, float] = LRUCache(_PAUSED_REMEMBERED)
        # Each event type's counter looked up once: `labels()` on every event was 5 % of a stream's loop.
        self._event_counters = {name: metrics.stream_events.labels(name) for name in (*EVENT_TYPES, OTHER)}
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

    @property
    def _server(self) -> str:
        """The upstream's host, as the GenAI histograms' `server_address` (one per config: bounded)."""
        return self._runtime.current.config.upstream.base_url.host or OTHER

    def run_responded(self, record: RunRecord) -> None:
        tenant = self.labels.tenant(record.tenant)
        if record.streamed:
            self.m.active_streams.labels(tenant).inc()
            self.m.streams.labels(tenant).inc()
        for kind, remaining in record.upstream_remaining.items():
            self.m.upstream_remaining.labels(tenant, kind).set(remaining)

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        (self._event_counters.get(event.event) or self._event_counters[OTHER]).inc()

    def config_reloaded(self, ok: bool) -> None:
        self.m.config_reloads.labels("ok" if ok else "error").inc()
        if ok:  # new tenants, rules
            self._start_series()

    def budget_read(self, reading: BudgetReading) -> None:
        usd_reading = reading.unit == "usd"  # in µUSD: the gauges say dollars
        m = self.m
        limit, left = (
            (m.budget_limit_usd, m.budget_remaining_usd) if usd_reading else (m.budget_limit, m.budget_remaining)
        )
        scale = 1e-6 if usd_reading else 1
        for period, value in reading.limits.items():
            limit.labels(reading.tenant, period).set(value * scale)
        for period, value in reading.remaining.items():
            left.labels(reading.tenant, period).set(value * scale)

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
        self._count_run(record, tenant)
        self._genai(record, tenant)

    def _count_run(self, record: RunRecord, tenant: str) -> None:
        """What the call shows of its run: its creation, tool calls, pause for tool outputs, queue time."""
        m = self.m
        if record.run_id is not None and record.route != "submit_tool_outputs" and record.upstream_status == 200:
            m.runs_started.labels(tenant, self.labels.model(record.model)).inc()
        for tool in record.tool_calls.values():
            m.tool_calls.labels(tenant, tool if tool in TOOL_TYPES else OTHER).inc()
        if record.queued_s is not None and record.in_progress_s is not None:
            m.queued.labels(tenant).observe(max(0.0, record.in_progress_s - record.queued_s))
        if record.route == "submit_tool_outputs" and record.run_id is not None:
            paused = self._paused.pop(record.run_id, None)
            if paused is not None:
                m.requires_action_wait.labels(tenant).observe(max(0.0, record.started - paused))
        if record.requires_action_s is not None and record.run_id is not None:
            m.requires_action.labels(tenant).inc()
            self._paused[record.run_id] = record.started + record.requires_action_s

    def _genai(self, record: RunRecord, tenant: str) -> None:
        """The conventions' histograms: the call's duration (with `error_type` only when it failed), the
        stream's first chunk and time per chunk as the upstream's client sees them, a completed run's
        time to its first token, the run's tokens."""
        m = self.m
        genai = (OPERATION, PROVIDER, self.labels.model(record.requested_model or record.model),
                 self.labels.model(record.model), self._server)  # fmt: skip
        if record.error_type is None:
            m.operation_duration.labels(*genai, tenant).observe(record.duration_s or 0.0)
        else:
            m.operation_duration_failed.labels(*genai, record.error_type, tenant).observe(record.duration_s or 0.0)
        if record.streamed and record.ttfb_s is not None and record.forwarded_s is not None:
            m.time_to_first_chunk.labels(*genai, tenant).observe(max(0.0, record.ttfb_s - record.forwarded_s))
        chunks = record.event_counts.get("thread.message.delta", 0)
        if chunks > 1 and record.first_delta_s is not None and record.last_delta_s is not None:
            per_chunk = (record.last_delta_s - record.first_delta_s) / (chunks - 1)
            m.time_per_output_chunk.labels(*genai, tenant).observe(per_chunk)
        if record.first_delta_s is not None and record.status == "completed":
            m.time_to_first_token.labels(*genai, tenant).observe(record.first_delta_s)
        if record.usage is not None:
            for kind, count in (("input", record.usage.prompt_tokens), ("output", record.usage.completion_tokens)):
                m.token_usage.labels(*genai, kind, tenant).observe(count)

    def run_settled(self, run: RunSettled) -> None:
        """Runs, tokens and dollars as the ledger has them: each run once, when it ends, however it was
        seen to (a call's stream, a poll, a run list, the reconciler); a refused call made no run."""
        m = self.m
        tenant, model = self.labels.tenant(run.tenant), self.labels.model(run.model)
        m.runs.labels(tenant, model, run.status).inc()
        if run.status != "completed":
            reason = run.reason if run.reason in REASONS else (OTHER if run.reason else "none")
            m.unfinished.labels(tenant, run.status, reason).inc()
        usage = run.usage
        if usage is None:
            return
        counts = (("input", usage.prompt_tokens), ("output", usage.completion_tokens),
                  ("cached_input", usage.cached_tokens or 0))  # fmt: skip
        for kind, count in counts:
            m.tokens.labels(tenant, model, kind).inc(count)
        if run.cost is None:
            m.unpriced_runs.labels(tenant, model).inc()
        m.cost.labels(tenant, model).inc(usd(run.cost or 0))

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
