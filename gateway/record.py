"""The record stage: observers subscribe to run events; they observe, never decide or block.

Like mitmproxy addons, an observer implements only the hooks it cares about. A failing observer is
logged and skipped: telemetry must never break the relay.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from .runs import RunRecord
    from .sse import SSEEvent

log = structlog.get_logger("gateway.record")


class RunObserver(Protocol):
    def run_event(self, record: RunRecord, event: SSEEvent) -> None: ...

    def run_finished(self, record: RunRecord) -> None: ...


class Recorder:
    """Fans run events out to the observers, isolating each from the others' failures."""

    def __init__(self, observers: list[RunObserver] | None = None) -> None:
        self.observers: list[RunObserver] = list(observers or [])

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        self._notify("run_event", record, event)

    def run_finished(self, record: RunRecord) -> None:
        self._notify("run_finished", record)

    def _notify(self, hook: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                log.exception("observer_failed", observer=type(observer).__name__, hook=hook)


class RunLog:
    """Logs one line per finished run call."""

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        return None

    def run_finished(self, record: RunRecord) -> None:
        fields = dataclasses.asdict(record)
        del fields["event_counts"], fields["started"]
        log.info("run_call", **fields)
