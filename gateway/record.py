"""The record stage: observers subscribe to run events; they observe, never decide or block.

Like mitmproxy addons, an observer is a small class that implements only the hooks it cares
about, each a plain method called with the run's record:

    run_decided(record)          the policy has judged the call (allowed or not), before forwarding
    run_responded(record)        the upstream's status and headers have arrived
    run_event(record, event)     one SSE event of the run's stream, after it was relayed
    run_finished(record)         the call is over, whatever the outcome

A failing observer is logged and skipped: telemetry must never break the relay.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from .runs import RunRecord

log = structlog.get_logger("gateway.record")

HOOKS = ("run_decided", "run_responded", "run_event", "run_finished")


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

    def run_event(self, record: RunRecord, event: Any) -> None:
        self._notify("run_event", record, event)

    def run_finished(self, record: RunRecord) -> None:
        self._notify("run_finished", record)

    def _notify(self, hook: str, *args: object) -> None:
        for call in self._hooks[hook]:
            try:
                call(*args)
            except Exception:
                log.exception("observer_failed", observer=type(getattr(call, "__self__", call)).__name__, hook=hook)


class RunLog:
    """A `run_call` line per finished run call, at debug level.

    The audit log is the record of every run call (written in batches off the event loop); this line
    is for debugging, so at the default level it costs nothing: a log write per request on the event
    loop hands the GIL to whatever thread wants it (the span exporter) and the loop waits for it back.
    """

    SKIP = frozenset({"event_counts", "started", "started_ns", "body"})

    def __init__(self) -> None:
        from .runs import RunRecord  # (runs imports this module)

        self._fields = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in self.SKIP)

    def run_finished(self, record: RunRecord) -> None:
        if not log.is_enabled_for(logging.DEBUG):
            return
        fields = {name: getattr(record, name) for name in self._fields}
        fields["usage"] = record.usage and record.usage.as_json()
        log.debug("run_call", **fields)
