"""The gateway's domain: what a run call is, what it used, who watches it. A leaf: it imports
nothing of the gateway, so every layer can speak in these terms.

- `RunRecord`: one run call from arrival to its last byte, as the observers (log, metrics, traces,
  audit) read it. The pipeline fills it in; observers only read it.
- `Recorder`: fans events out to observers (like mitmproxy addons, an observer implements only the
  hooks it cares about, each a plain method):

    run_decided(record)          the policy has judged the call (allowed or not), before forwarding
    run_responded(record)        the upstream's status and headers have arrived
    run_event(record, event)     one SSE event of the run's stream, after it was relayed
    run_finished(record)         the call is over, whatever the outcome (a refusal names its limit)
    run_settled(run)             a run's end, counted once, whichever call or pass saw it
    config_reloaded(ok)          a reload was tried
    budget_read(reading)         a tenant's token budgets, as the shared ledger stands
    state_changed(transition)    the shared state went down or came back up

  A failing observer is logged and skipped: telemetry must never break the relay.
- `settled_runs`: the one reading of "which runs in this upstream JSON are finished, with what usage";
  `ending_runs`: of "which runs in it do no more work" (their concurrency slots are given back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web

log = structlog.get_logger("gateway.record")

# The status a call is counted with (request metrics, its SERVER span) when not its response's. A
# stream's answer is whole once its `[DONE]` went out: a client that leaves right after (the sync SDK
# closes on `[DONE]`, which cancels the handler) made a complete call, counted with the answer's
# status. A client that left before is counted 499, whether aiohttp cancelled the handler or a write
# found the connection closing first.
COUNTED_STATUS = web.RequestKey("counted_status", int)
CLIENT_CLOSED = 499  # nginx's status for a client that left before its answer was complete


def counted_status(request: web.Request, response: web.StreamResponse | None) -> int:
    """`response` is None when the handler was cancelled: the client left."""
    return request.get(COUNTED_STATUS, CLIENT_CLOSED if response is None else response.status)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event of a run's stream (the relay's parser makes them; observers hear them)."""

    event: str
    data: str
    id: str | None = None


def json_object(data: str | bytes) -> Mapping[str, Any]:
    """An upstream body read leniently: the JSON object it holds, or {} (real responses vary)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, Mapping) else {}


TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})
# A run in one of these does no more work for its client: it gives its concurrency slot back.
# `cancelling` counts (the cancel was accepted): a client at its limit need not poll on to the end.
ENDING_STATUSES = TERMINAL_STATUSES | {"cancelling"}


@dataclass(frozen=True, slots=True)
class TokenLimits:
    per_minute: int | None = None
    per_day: int | None = None
    per_month: int | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.per_minute, self.per_day, self.per_month))


@dataclass(frozen=True, slots=True)
class UsdLimits:
    """USD budgets, in µUSD (whole micro-dollars: the unit every cost is counted in)."""

    per_day: int | None = None
    per_month: int | None = None

    def __bool__(self) -> bool:
        return self.per_day is not None or self.per_month is not None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int | None = None  # of the prompt's, read from the provider's cache (when reported)
    reasoning_tokens: int | None = None  # of the completion's (when reported)

    @classmethod
    def from_json(cls, value: object) -> Usage | None:
        if not isinstance(value, Mapping):
            return None
        prompt, completion, total = (value.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
        if type(prompt) is int and type(completion) is int and type(total) is int:  # bool is not a count
            cached = _detail(value, ("prompt_token_details", "prompt_tokens_details"), "cached_tokens")
            reasoning = _detail(value, ("completion_tokens_details",), "reasoning_tokens")
            return cls(prompt, completion, total, cached, reasoning)
        return None

    def as_json(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}  # fmt: skip


def _detail(usage: Mapping[str, Any], names: Sequence[str], key: str) -> int | None:
    for name in names:  # (the Assistants API says prompt_token_details, the others prompt_tokens_details)
        details = usage.get(name)
        if isinstance(details, Mapping) and type(details.get(key)) is int:
            return int(details[key])
    return None


@dataclass(slots=True)
class RunRecord:
    """One run call, from arrival to its last byte: what observers (log, metrics, traces, audit) read."""

    request_id: str
    route: str
    tenant: str
    started: float  # perf_counter; every `*_s` below is seconds since this
    started_ns: int = 0  # the wall clock at `started`, for telemetry timestamps
    key_fingerprint: str | None = None
    client_address: str | None = None
    trace_id: str | None = None
    # What was asked (after the policy: caps are the effective ones).
    requested_model: str | None = None
    upstream_model: str | None = None  # the model sent upstream, where `upstream.model_map` renamed the run's
    tools: tuple[str, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    # The policy stage's verdict: allow | deny | modify | none (no policy), rules as ids.
    policy: str | None = None
    decision: str = "none"
    violations: tuple[str, ...] = ()
    shadowed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    # What the upstream said.
    thread_id: str | None = None
    run_id: str | None = None
    assistant_id: str | None = None
    model: str | None = None
    status: str | None = None
    incomplete_reason: str | None = None  # `incomplete_details.reason` of an incomplete run
    last_error_code: str | None = None  # `last_error.code` of a failed run
    tool_calls: dict[str, str] = field(default_factory=dict)  # tool call id → type, from the completed run steps
    upstream_remaining: dict[str, int] = field(default_factory=dict)  # requests, tokens: x-ratelimit-remaining-*
    usage: Usage | None = None
    cost_micros: int | None = None  # what `usage` cost at the price table (µUSD); None: no usage, or unpriced
    upstream_status: int | None = None
    streamed: bool = False
    events: int = 0
    event_counts: dict[str, int] = field(default_factory=dict)
    # Milestones.
    decided_s: float | None = None
    forwarded_s: float | None = None  # the gateway's own overhead before the upstream is asked
    ttfb_s: float | None = None
    first_delta_s: float | None = None
    last_delta_s: float | None = None
    queued_s: float | None = None  # the stream's `thread.run.queued`
    in_progress_s: float | None = None  # … and its `thread.run.in_progress`
    requires_action_s: float | None = None
    terminal_s: float | None = None
    duration_s: float | None = None
    # How it ended.
    broken: bool = False
    client_gone: bool = False
    drained: bool = False  # the gateway cut the stream: still open at its drain deadline (SIGTERM)
    error: str | None = None
    error_type: str | None = None  # a short, bounded kind: an error code or the upstream's status
    refused_by: str | None = None  # the limit that refused the call (requests_per_minute, ...)
    body: Mapping[str, Any] | None = field(default=None, repr=False)  # the parsed request, for content capture

    def note_caps(self, body: Mapping[str, Any]) -> None:
        self.max_prompt_tokens, self.max_completion_tokens = token_caps(body)


def token_caps(body: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """A run body's `max_prompt_tokens` and `max_completion_tokens`, where they are whole numbers."""
    prompt, completion = body.get("max_prompt_tokens"), body.get("max_completion_tokens")
    return (prompt if type(prompt) is int else None), (completion if type(completion) is int else None)


@dataclass(frozen=True, slots=True)
class RunSettled:
    """A run's end as the ledger took it: `usage` None when it ended unknown (its reservation stays
    charged); `cost` in µUSD, None when its model has no price or nothing is known; `reason` why it
    did not complete, as it said."""

    tenant: str
    model: str
    status: str
    usage: Usage | None
    cost: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetReading:
    """A tenant's budgets as the shared ledger stands: limit and remaining per period (minute, day,
    month), in tokens or (`unit` usd) in µUSD."""

    tenant: str
    limits: dict[str, int]
    remaining: dict[str, int]
    unit: str = "tokens"


HOOKS = (
    "run_decided", "run_responded", "run_event", "run_finished",  # one run call
    "run_settled",  # a run's end, counted once, whichever call or pass saw it
    "config_reloaded", "budget_read", "state_changed",  # the gateway's own life
)  # fmt: skip


class Recorder:
    """Fans run events out to the observers that have the hook, isolating each from the others."""

    def __init__(self, observers: Sequence[object] = ()) -> None:
        self.observers = list(observers)
        self._hooks: dict[str, list[Callable[..., None]]] = {
            hook: [getattr(o, hook) for o in self.observers if callable(getattr(o, hook, None))] for hook in HOOKS
        }

    def run_decided(self, record: RunRecord) -> None:
        self._notify("run_decided", record)

    def run_responded(self, record: RunRecord) -> None:
        self._notify("run_responded", record)

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        self._notify("run_event", record, event)

    def run_finished(self, record: RunRecord) -> None:
        self._notify("run_finished", record)

    def run_settled(self, run: RunSettled) -> None:
        """A run was settled into the ledger, for the first time (by its stream, a poll, a run list, a
        cancel or the reconciler)."""
        self._notify("run_settled", run)

    def config_reloaded(self, ok: bool) -> None:
        """A reload was tried: `ok` it is serving, else the old config goes on."""
        self._notify("config_reloaded", ok)

    def budget_read(self, reading: BudgetReading) -> None:
        self._notify("budget_read", reading)

    def state_changed(self, transition: str) -> None:
        """The shared state went `down` (an outage began) or came back `up`."""
        self._notify("state_changed", transition)

    def _notify(self, hook: str, *args: object) -> None:
        for call in self._hooks[hook]:
            try:
                call(*args)
            except Exception:
                log.exception("observer_failed", observer=type(getattr(call, "__self__", call)).__name__, hook=hook)


@dataclass(frozen=True, slots=True)
class SettledRun:
    """A finished run as an upstream run object shows it: what the ledger needs."""

    run_id: str
    model: str
    status: str
    usage: Usage
    reason: str | None = None  # why it did not complete: `last_error.code` or `incomplete_details.reason`


def settled_runs(data: object) -> Iterator[SettledRun]:
    """Every finished run, with its usage, in a run object or a page of them (`object: list`)."""
    for run in _runs_in(data, TERMINAL_STATUSES):
        usage = Usage.from_json(run.get("usage"))
        if usage is not None:
            yield SettledRun(run["id"], str(run.get("model") or "unknown"), str(run["status"]), usage, ending_reason(run))


def ending_reason(run: Mapping[str, Any]) -> str | None:
    """Why a run did not complete, as it says: its `last_error.code`, or its `incomplete_details.reason`."""
    for holder, key in (("last_error", "code"), ("incomplete_details", "reason")):
        detail = run.get(holder)
        if isinstance(detail, Mapping) and isinstance(detail.get(key), str):
            return str(detail[key])
    return None


def ending_runs(data: object) -> Iterator[str]:
    """The id of every run in a run object or a page of them that does no more work (`ENDING_STATUSES`),
    with or without its usage."""
    for run in _runs_in(data, ENDING_STATUSES):
        yield run["id"]


def _runs_in(data: object, statuses: frozenset[str]) -> Iterator[Mapping[str, Any]]:
    runs: Iterable[Any] = data.get("data", ()) if isinstance(data, Mapping) and data.get("object") == "list" else [data]
    for run in runs:
        if isinstance(run, Mapping) and run.get("object") == "thread.run" and run.get("status") in statuses:
            if isinstance(run.get("id"), str):
                yield run
