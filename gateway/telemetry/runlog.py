"""The run log: one `run_call` line per finished run call, at debug level."""

from __future__ import annotations

import dataclasses
import logging

import structlog

from gateway.domain import RunRecord

log = structlog.get_logger("gateway.record")


class RunLog:
    """A `run_call` line per finished run call, at debug level.

    The audit log is the record of every run call (written in batches off the event loop); this line
    is for debugging, so at the default level it costs nothing: a log write per request on the event
    loop hands the GIL to whatever thread wants it (the span exporter) and the loop waits for it back.
    """

    SKIP = frozenset({"event_counts", "started", "started_ns", "body"})

    def __init__(self) -> None:
        self._fields = tuple(f.name for f in dataclasses.fields(RunRecord) if f.name not in self.SKIP)

    def run_finished(self, record: RunRecord) -> None:
        if not log.is_enabled_for(logging.DEBUG):
            return
        fields = {name: getattr(record, name) for name in self._fields}
        fields["usage"] = record.usage and record.usage.as_json()
        log.debug("run_call", **fields)
