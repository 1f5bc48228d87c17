"""The limits, pure: which checks a run call faces, and how a verdict reads to the client.

The admission stage (`pipeline/admit.py`) runs the checks against the shared state; everything here
is computed from the tenant's limits and the state's verdicts alone, so it is tested without a
server. A refusal is OpenAI's own 429 — `retry-after`, `retry-after-ms` and the `x-ratelimit-*`
headers — so the SDK's retry logic works unchanged; the same headers ride on every admitted call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gateway.config.limits import TenantLimits
from gateway.errors import RateLimited
from gateway.state import CONCURRENT_RUNS, OPEN_STREAMS, Verdict, Window


@dataclass(frozen=True, slots=True)
class Checks:
    """One run call's checks, in order: request rates (bucket, per minute), then leases (bucket, name, limit);
    and the run's slots: the concurrent-runs buckets its run holds from the end of the call until it finishes."""

    rates: tuple[tuple[str, int], ...]
    leases: tuple[tuple[str, str, int], ...]
    run_slots: tuple[str, ...]


def checks_for(limits: TenantLimits, tenant: str, key: str, stream: bool, creates_run: bool = True) -> Checks:
    """The tenant's limits (and its key's, with `per_key`) that apply to one call; unset ones are skipped.

    A concurrent-runs slot is counted per run, not per call: a call that continues a run (tool outputs)
    takes none, its run holds one already (a tenant at its limit must be able to finish its runs)."""
    rates = [(f"rpm:{tenant}", limits.requests_per_minute)]
    runs = [(f"runs:{tenant}", limits.concurrent_runs)]
    if limits.per_key is not None:
        rates.append((f"rpm:{tenant}:{key}", limits.per_key.requests_per_minute))
        runs.append((f"runs:{tenant}:{key}", limits.per_key.concurrent_runs))
    leases = [(bucket, CONCURRENT_RUNS, limit) for bucket, limit in runs] if creates_run else []
    if stream:
        leases.append((f"streams:{tenant}", OPEN_STREAMS, limits.open_streams))
    return Checks(
        tuple((bucket, limit) for bucket, limit in rates if limit is not None),
        tuple((bucket, name, limit) for bucket, name, limit in leases if limit is not None),
        tuple(bucket for bucket, limit in runs if limit is not None),
    )


@dataclass(slots=True)
class Ticket:
    """What one admitted call holds: its lease (one id, in each bucket it was taken in) and the run's
    slots, to give back or hand to the run; and the windows to report."""

    lease: str = ""
    leases: list[str] = field(default_factory=list)  # the buckets the call's lease was taken in
    run_slots: tuple[str, ...] = ()
    requests: Window | None = None
    tokens: Window | None = None

    def saw_requests(self, window: Window | None) -> None:
        """Of several request windows (tenant, key), the headers report the tightest."""
        if self.requests is None or (window is not None and window.remaining < self.requests.remaining):
            self.requests = window

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for kind, window in (("requests", self.requests), ("tokens", self.tokens)):
            if window is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(window.limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(max(window.remaining, 0))
                headers[f"x-ratelimit-reset-{kind}"] = duration(window.reset_s)
        return headers


def refusal(verdict: Verdict, limit: str, tenant: str, ticket: Ticket) -> RateLimited:
    """The 429 for a refused check: which limit, how much is left, when to come back."""
    retry = max(verdict.retry_after_s, 0.001)
    headers = {**ticket.headers(), "retry-after": str(math.ceil(retry)), "retry-after-ms": str(math.ceil(retry * 1000))}
    if verdict.budget is not None:  # a USD budget, in µUSD
        budget = verdict.budget
        return RateLimited(
            f"Budget reached for tenant {tenant} on {limit.replace('_', ' ')}: limit ${budget.limit / 1e6:,.2f}, "
            f"remaining ${budget.remaining / 1e6:,.2f}, less than this run may cost. "
            f"Please try again in {duration(retry)}.",
            kind="usd",
            headers=headers,
        )
    window = verdict.window
    usage = "" if window is None else f": limit {window.limit}, remaining {window.remaining}"
    return RateLimited(
        f"Rate limit reached for tenant {tenant} on {limit.replace('_', ' ')}{usage}. "
        f"Please try again in {duration(retry)}.",
        kind="tokens" if limit.startswith("tokens") else "requests",
        headers=headers,
    )


def duration(seconds: float) -> str:
    """OpenAI's format for resets: `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 1)}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
