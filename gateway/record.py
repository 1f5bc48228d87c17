"""The record stage: observers subscribe to run events; they observe, never decide or block.

Like mitmproxy addons, an observer implements only the hooks it cares about. A failing observer is
logged and skipped: telemetry must never break the relay.
"""

from __future__ import annotations

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
        for observer in self.observers:
            try:
                observer.run_event(record, event)
            except Exception:
                log.exception("observer_failed", observer=type(observer).__name__, hook="run_event")

    def run_finished(self, record: RunRecord) -> None:
        for observer in self.observers:
            try:
                observer.run_finished(record)
            except Exception:
                log.exception("observer_failed", observer=type(observer).__name__, hook="run_finished")


class RunLog:
    """Logs one line per finished run call."""

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        return None

    def run_finished(self, record: RunRecord) -> None:
        log.info(
            "run_call",
            request_id=record.request_id,
            route=record.route,
            tenant=record.tenant,
            thread_id=record.thread_id,
            run_id=record.run_id,
            status=record.status,
            usage=None if record.usage is None else record.usage.total_tokens,
            upstream_status=record.upstream_status,
            streamed=record.streamed,
            events=record.events,
            ttfb_s=record.ttfb_s,
            first_delta_s=record.first_delta_s,
            duration_s=record.duration_s,
            broken=record.broken,
            client_gone=record.client_gone,
        )
