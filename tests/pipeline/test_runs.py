from __future__ import annotations

import itertools

import orjson

from gateway.domain import Recorder, RunRecord, Usage
from gateway.http.sse import SSEEvent
from gateway.pipeline.track import RunTracker


class Clock:
    def __init__(self) -> None:
        self.ticks = itertools.count(1)

    def __call__(self) -> float:
        return float(next(self.ticks))


class Collect:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.finished: list[RunRecord] = []

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        self.events.append(event.event)

    def run_finished(self, record: RunRecord) -> None:
        self.finished.append(record)


class Broken:
    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        raise RuntimeError("observer bug")

    def run_finished(self, record: RunRecord) -> None:
        raise RuntimeError("observer bug")


class OnlyFinished:
    """Observers implement only the hooks they need."""

    def __init__(self) -> None:
        self.finished = 0

    def run_finished(self, record: RunRecord) -> None:
        self.finished += 1


def tracker(*observers: object) -> RunTracker:
    record = RunRecord("req_1", "create_thread_and_run", "t", 0.0)
    return RunTracker(record, Recorder(list(observers)), clock=Clock())  # type: ignore[arg-type]


def run(status: str, **extra: object) -> SSEEvent:
    body = {"id": "run_1", "object": "thread.run", "thread_id": "thread_1", "assistant_id": "asst_1",
            "model": "gpt-4o", "status": status, "unexpected_field": {"x": 1}, **extra}  # fmt: skip
    return SSEEvent(f"thread.run.{status}", orjson.dumps(body).decode())


def test_stream_events_fill_the_record():
    seen = Collect()
    t = tracker(seen)
    t.on_first_byte()
    t.on_event(SSEEvent("thread.created", '{"id":"thread_1","object":"thread"}'))
    t.on_event(run("queued"))
    t.on_event(SSEEvent("thread.message.delta", "{}"))
    t.on_event(SSEEvent("thread.message.delta", "{}"))
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "prompt_token_details": {"cached_tokens": 0}}
    t.on_event(run("completed", usage=usage))
    t.on_event(SSEEvent("done", "[DONE]"))
    t.finish()
    record = seen.finished[0]
    assert (record.thread_id, record.run_id, record.assistant_id, record.model) == ("thread_1", "run_1", "asst_1", "gpt-4o")
    assert record.status == "completed"
    assert record.usage == Usage(10, 5, 15, cached_tokens=0)  # the details the API reports are kept
    assert (record.ttfb_s, record.queued_s, record.first_delta_s, record.last_delta_s) == (1.0, 2.0, 3.0, 4.0)
    assert (record.terminal_s, record.duration_s) == (5.0, 6.0)
    assert record.events == 6 and record.event_counts["thread.message.delta"] == 2
    assert seen.events[-1] == "done"


def test_step_events_do_not_overwrite_the_run():
    t = tracker()
    t.on_event(run("in_progress"))
    step = {"id": "step_1", "object": "thread.run.step", "status": "completed", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    t.on_event(SSEEvent("thread.run.step.completed", orjson.dumps(step).decode()))
    assert (t.record.run_id, t.record.status, t.record.usage) == ("run_1", "in_progress", None)


def test_unreadable_and_unknown_events_are_tolerated():
    t = tracker()
    t.on_event(SSEEvent("thread.run.completed", "{not json"))
    t.on_event(SSEEvent("thread.run.completed", "[1, 2]"))
    t.on_event(SSEEvent("thread.brand_new_event", '{"id": 1}'))
    t.on_event(run("completed", usage={"prompt_tokens": "10", "completion_tokens": 1, "total_tokens": 11}))
    assert t.record.status == "completed" and t.record.usage is None
    assert t.record.events == 4


def test_error_event_is_recorded():
    t = tracker()
    t.on_event(SSEEvent("error", '{"error": {"message": "server had an error", "type": "server_error"}}'))
    assert t.record.error == "server had an error"


async def test_polled_run_object():
    t = tracker()
    await t.on_json(orjson.dumps({"id": "run_9", "object": "thread.run", "status": "queued", "thread_id": "thread_9"}))
    assert (t.record.run_id, t.record.thread_id, t.record.status) == ("run_9", "thread_9", "queued")


def test_a_failing_observer_never_breaks_the_others():
    seen, partial = Collect(), OnlyFinished()
    t = tracker(Broken(), partial, seen)
    t.on_event(run("queued"))
    t.finish()
    assert seen.events == ["thread.run.queued"] and len(seen.finished) == 1 and partial.finished == 1


async def test_ids_are_announced_once_as_they_appear():
    heard: list[tuple[str | None, str | None]] = []

    async def on_ids(thread_id: str | None, run_id: str | None) -> None:
        heard.append((thread_id, run_id))

    t = RunTracker(RunRecord("req_1", "create_thread_and_run", "t", 0.0), Recorder(), on_ids=on_ids)
    await t.on_events([SSEEvent("thread.created", '{"id":"thread_1","object":"thread"}')])
    await t.on_events([run("queued"), run("in_progress")])
    await t.on_events([SSEEvent("thread.message.delta", "{}")])
    assert heard == [("thread_1", None), ("thread_1", "run_1")]
