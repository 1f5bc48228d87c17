"""The track stage: what the upstream says about a run (stream events or a run object) → RunRecord.

Lenient by design: real responses carry fields the spec lacks and streams may carry event types
nobody has seen yet; anything unreadable is skipped, never raised into the relay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from gateway.domain import TERMINAL_STATUSES, Recorder, RunRecord, SSEEvent, Usage, json_object
from gateway.errors import GatewayError
from gateway.schema.requests import RunRequest, SubmitToolOutputsRequest


def note_request(record: RunRecord, request: RunRequest, body: Mapping[str, Any]) -> None:
    """What the client asked, as sent (spec defaults the client did not send are not reported)."""
    record.body = body
    record.assistant_id = body.get("assistant_id") if isinstance(body.get("assistant_id"), str) else None
    record.requested_model = body.get("model") if isinstance(body.get("model"), str) else None
    if isinstance(request, SubmitToolOutputsRequest):
        return
    record.tools = tuple(tool.type for tool in request.tools or ())
    sent = request.model_fields_set
    record.temperature = request.temperature if "temperature" in sent else None
    record.top_p = request.top_p if "top_p" in sent else None
    record.note_caps(body)


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
        model_map: Mapping[str, str] | None = None,
        price: Callable[[str | None, Usage | None], int | None] | None = None,
    ):
        self.record = record
        self._model_map = model_map or {}
        self._price = price  # a run's cost (µUSD) from its model and usage; None: unpriced
        self._recorder = recorder
        self._on_ids = on_ids
        self._announced: tuple[str | None, str | None] = (None, None)
        self._clock = clock

    def on_forward(self) -> None:
        self.record.forwarded_s = self._clock() - self.record.started

    def on_response(self, status: int, streamed: bool, headers: Mapping[str, str]) -> None:
        self.record.upstream_status = status
        self.record.streamed = streamed
        for kind in ("requests", "tokens"):  # the upstream's own rate limits: how much headroom is left
            remaining = headers.get(f"x-ratelimit-remaining-{kind}", "")
            if remaining.isdigit():
                self.record.upstream_remaining[kind] = int(remaining)
        if status >= 400:
            self.record.error_type = str(status)
        self._recorder.run_responded(self.record)

    def on_first_byte(self) -> None:
        self.record.ttfb_s = self._clock() - self.record.started

    def on_event(self, event: SSEEvent) -> None:
        record = self.record
        record.events += 1
        record.event_counts[event.event] = record.event_counts.get(event.event, 0) + 1
        name = event.event
        if name == "thread.message.delta":
            record.last_delta_s = self._clock() - record.started
            if record.first_delta_s is None:
                record.first_delta_s = record.last_delta_s
        elif name == "thread.run.step.completed":
            record.tool_calls.update(_tool_calls(json_object(event.data)))
        elif name == "thread.created":
            thread = json_object(event.data)
            if isinstance(thread.get("id"), str):
                record.thread_id = thread["id"]
        elif name.startswith("thread.run.") and not name.startswith("thread.run.step."):
            self._read_run(json_object(event.data))
        elif name == "error":
            error = json_object(event.data).get("error")
            record.error = str(error.get("message")) if isinstance(error, Mapping) else "error event"
            record.error_type = record.error_type or "error_event"
        self._recorder.run_event(record, event)

    async def on_events(self, events: Iterable[SSEEvent]) -> None:
        for event in events:
            self.on_event(event)
        await self._announce_ids()

    async def on_json(self, body: bytes) -> None:
        self._read_run(json_object(body))
        await self._announce_ids()

    async def _announce_ids(self) -> None:
        ids = (self.record.thread_id, self.record.run_id)
        if ids != self._announced and self._on_ids is not None:
            self._announced = ids
            await self._on_ids(*ids)

    def on_broken(self, reason: str) -> None:
        self.record.broken = True
        self.record.error = self.record.error or reason
        self.record.error_type = "stream_broken"

    def decided(self) -> None:
        self.record.decided_s = self._clock() - self.record.started
        self._recorder.run_decided(self.record)

    def on_error(self, exc: BaseException) -> None:
        """Why the call ended before the upstream answered: a refusal, or the client gone."""
        if isinstance(exc, GatewayError):
            self.record.error, self.record.error_type = exc.message, exc.code or exc.type
        elif isinstance(exc, asyncio.CancelledError):
            self.record.client_gone = True
        else:
            self.record.error, self.record.error_type = repr(exc), "internal_error"

    def failed(self, exc: BaseException) -> None:
        """The call ended by `exc` (a refusal, the client gone): its outcome is recorded all the same."""
        if not self.finished:
            self.on_error(exc)
            self.finish()

    def on_client_gone(self) -> None:
        self.record.client_gone = True

    @property
    def awaiting_run_id(self) -> bool:
        return self.record.run_id is None and self.record.route != "submit_tool_outputs"

    def on_cut(self, reason: str) -> None:
        """The gateway itself ended the stream: it was still open at the drain deadline (SIGTERM)."""
        self.record.drained = True
        self.record.error = reason
        self.record.error_type = "gateway_draining"

    @property
    def finished(self) -> bool:
        return self.record.duration_s is not None

    def finish(self) -> None:
        self.record.duration_s = self._clock() - self.record.started
        if self.record.model is not None:
            self.record.upstream_model = self._model_map.get(self.record.model)
        if self._price is not None and self.record.usage is not None:
            self.record.cost_micros = self._price(self.record.model, self.record.usage)
        self._recorder.run_finished(self.record)

    def _read_run(self, run: Mapping[str, Any]) -> None:
        if run.get("object") != "thread.run":
            return
        record = self.record
        for name in ("thread_id", "assistant_id", "model", "status"):
            value = run.get(name)
            if isinstance(value, str):
                setattr(record, name, value)
        if record.status == "queued" and record.queued_s is None:
            record.queued_s = self._clock() - record.started
        elif record.status == "in_progress" and record.in_progress_s is None:
            record.in_progress_s = self._clock() - record.started
        elif record.status == "requires_action" and record.requires_action_s is None:
            record.requires_action_s = self._clock() - record.started
        elif record.status in TERMINAL_STATUSES and record.terminal_s is None:
            record.terminal_s = self._clock() - record.started
        if isinstance(run.get("id"), str):
            record.run_id = run["id"]
        details, error = run.get("incomplete_details"), run.get("last_error")
        if isinstance(details, Mapping) and isinstance(details.get("reason"), str):
            record.incomplete_reason = details["reason"]
        if isinstance(error, Mapping) and isinstance(error.get("code"), str):
            record.last_error_code = error["code"]
        usage = Usage.from_json(run.get("usage"))
        if usage is not None:
            record.usage = usage



def _tool_calls(step: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """A completed run step's tool calls: (id, type) each."""
    details = step.get("step_details")
    calls = details.get("tool_calls") if isinstance(details, Mapping) else None
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, Mapping) and isinstance(call.get("id"), str) and isinstance(call.get("type"), str):
            yield call["id"], call["type"]
