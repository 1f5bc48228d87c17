"""Run lifecycle: what the upstream says about a run (stream events or a run object) → RunRecord.

Lenient by design: real responses carry fields the spec lacks and streams may carry event types
nobody has seen yet; anything unreadable is skipped, never raised into the relay.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .record import Recorder
from .sse import SSEEvent

TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled", "expired"})


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def from_json(cls, value: object) -> Usage | None:
        if not isinstance(value, Mapping):
            return None
        prompt, completion, total = (value.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
        if type(prompt) is int and type(completion) is int and type(total) is int:  # bool is not a count
            return cls(prompt, completion, total)
        return None


@dataclass(slots=True)
class RunRecord:
    request_id: str
    route: str
    tenant: str
    started: float
    thread_id: str | None = None
    run_id: str | None = None
    assistant_id: str | None = None
    model: str | None = None
    status: str | None = None
    usage: Usage | None = None
    upstream_status: int | None = None
    streamed: bool = False
    events: int = 0
    ttfb_s: float | None = None
    first_delta_s: float | None = None
    duration_s: float | None = None
    broken: bool = False
    client_gone: bool = False
    error: str | None = None
    # The policy stage's verdict: allow | deny | modify | none (no policy), rules as ids.
    decision: str = "none"
    violations: tuple[str, ...] = ()
    shadowed: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    event_counts: dict[str, int] = field(default_factory=dict)


IdsListener = Callable[[str | None, str | None], Awaitable[None]]


class RunTracker:
    """Reads run facts off the relayed response and tells the recorder; never raises into the relay.

    `on_ids` hears the thread and run ids as soon as they appear (ownership is claimed from them).
    """

    def __init__(
        self,
        record: RunRecord,
        recorder: Recorder,
        on_ids: IdsListener | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.record = record
        self._recorder = recorder
        self._on_ids = on_ids
        self._announced: tuple[str | None, str | None] = (None, None)
        self._clock = clock

    def on_response(self, status: int, streamed: bool) -> None:
        self.record.upstream_status = status
        self.record.streamed = streamed

    def on_first_byte(self) -> None:
        self.record.ttfb_s = self._clock() - self.record.started

    def on_event(self, event: SSEEvent) -> None:
        record = self.record
        record.events += 1
        record.event_counts[event.event] = record.event_counts.get(event.event, 0) + 1
        name = event.event
        if name == "thread.message.delta":
            if record.first_delta_s is None:
                record.first_delta_s = self._clock() - record.started
        elif name == "thread.created":
            thread = _json(event.data)
            if isinstance(thread.get("id"), str):
                record.thread_id = thread["id"]
        elif name.startswith("thread.run.") and not name.startswith("thread.run.step."):
            self._read_run(_json(event.data))
        elif name == "error":
            error = _json(event.data).get("error")
            record.error = str(error.get("message")) if isinstance(error, Mapping) else "error event"
        self._recorder.run_event(record, event)

    async def on_events(self, events: Iterable[SSEEvent]) -> None:
        for event in events:
            self.on_event(event)
        await self._announce_ids()

    async def on_json(self, body: bytes) -> None:
        self._read_run(_json(body))
        await self._announce_ids()

    async def _announce_ids(self) -> None:
        ids = (self.record.thread_id, self.record.run_id)
        if ids != self._announced and self._on_ids is not None:
            self._announced = ids
            await self._on_ids(*ids)

    def on_broken(self, reason: str) -> None:
        self.record.broken = True
        self.record.error = self.record.error or reason

    def on_client_gone(self) -> None:
        self.record.client_gone = True

    def finish(self) -> None:
        self.record.duration_s = self._clock() - self.record.started
        self._recorder.run_finished(self.record)

    def _read_run(self, run: Mapping[str, Any]) -> None:
        if run.get("object") != "thread.run":
            return
        record = self.record
        for name in ("thread_id", "assistant_id", "model", "status"):
            value = run.get(name)
            if isinstance(value, str):
                setattr(record, name, value)
        if isinstance(run.get("id"), str):
            record.run_id = run["id"]
        usage = Usage.from_json(run.get("usage"))
        if usage is not None:
            record.usage = usage


def _json(data: str | bytes) -> Mapping[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, Mapping) else {}
