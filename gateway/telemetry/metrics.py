"""Prometheus metrics, one registry per app (no process globals), served on GET /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter

if TYPE_CHECKING:
    from ..runs import RunRecord


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.config_reloads = Counter(
            "gateway_config_reloads", "Config reloads by result (ok, error).", ["result"], registry=self.registry
        )
        self.policy_decisions = Counter(
            "gateway_policy_decisions",
            "Policy decisions by tenant, decision (allow, deny, shadow_deny, modify) and rule.",
            ["tenant", "decision", "rule"],
            registry=self.registry,
        )


class PolicyMetrics:
    """Counts each run call's policy verdict, per rule that decided it."""

    def __init__(self, metrics: Metrics) -> None:
        self._decisions = metrics.policy_decisions

    def run_finished(self, record: RunRecord) -> None:
        if record.decision == "none":
            return
        count = self._decisions.labels
        for rule in record.violations:
            count(record.tenant, "deny", rule).inc()
        for rule in record.shadowed:
            count(record.tenant, "shadow_deny", rule).inc()
        for param in record.modified:
            count(record.tenant, "modify", f"tokens.{param}").inc()
        if record.decision == "allow" and not record.shadowed:
            count(record.tenant, "allow", "").inc()
