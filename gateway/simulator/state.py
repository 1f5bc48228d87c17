"""In-memory state of the simulated API, and the lifecycle of its runs.

A run is driven by its script (see `scripts.py`): a list of frames, the same events a stream would
carry. Applying a frame is what changes state, whichever way the run is consumed: a stream applies
each frame as it writes it; a polled run keeps its frames in `pending` and each retrieve applies them
up to the next run status change (queued -> in_progress -> completed / requires_action ...). So the
messages and steps a run produced are stored, and listable, in both cases.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from multidict import CIMultiDictProxy

from . import objects
from .objects import JsonObject
from .recordings import RecordedStream, Recording
from .responses import SimulatorError, bad_request, not_found
from .responses_store import ResponsesStore
from .scripts import RunPlan, replay_plan
from .settings import SimulatorSettings
from .sse import Frame

ACTIVE_STATUSES = frozenset({"queued", "in_progress", "requires_action", "cancelling"})
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
_T = TypeVar("_T")
_CANCELLABLE = frozenset({"queued", "in_progress", "requires_action"})


@dataclass(frozen=True)
class RecordedRequest:
    """A request as it reached the simulator, so tests can check what the gateway forwarded."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class RunRecord:
    obj: JsonObject
    plan: RunPlan
    pending: deque[Frame] = field(default_factory=deque)  # script frames a poll has yet to apply
    steps: dict[str, JsonObject] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.obj["status"])


@dataclass
class ThreadRecord:
    obj: JsonObject
    messages: dict[str, JsonObject] = field(default_factory=dict)
    runs: dict[str, RunRecord] = field(default_factory=dict)

    def active_run(self) -> RunRecord | None:
        return next((run for run in self.runs.values() if run.status in ACTIVE_STATUSES), None)


@dataclass
class StoredFile:
    obj: JsonObject
    content: bytes


class SimulatorState:
    def __init__(self, settings: SimulatorSettings, recordings: dict[str, Recording]) -> None:
        self.settings = settings
        self.recordings = recordings
        self.requests: list[RecordedRequest] = []
        self.open_streams = 0  # SSE responses being written right now
        self.aborted_streams = 0  # streams whose client went away before the end
        self.assistants: dict[str, JsonObject] = {}
        self.threads: dict[str, ThreadRecord] = {}
        self.files: dict[str, StoredFile] = {}
        self.vector_stores: dict[str, JsonObject] = {}
        # The Responses + Conversations API's conversations and stored responses.
        self.responses_store = ResponsesStore(retain=settings.retain_threads)
        # Set on app shutdown, so hung requests let go instead of holding the server up.
        self.stopping = asyncio.Event()

    # Lookups: unknown ids answer 404 in the real API's words.

    def assistant(self, assistant_id: str) -> JsonObject:
        return _get(self.assistants, assistant_id, "assistant")

    def thread(self, thread_id: str) -> ThreadRecord:
        return _get(self.threads, thread_id, "thread")

    def run(self, thread_id: str, run_id: str) -> RunRecord:
        return _get(self.thread(thread_id).runs, run_id, "run")

    def file(self, file_id: str) -> StoredFile:
        if file_id not in self.files:
            raise SimulatorError(404, f"No such File object: {file_id}", param="id")
        return self.files[file_id]

    def message(self, thread: ThreadRecord, message_id: str) -> JsonObject:
        return _get(thread.messages, message_id, "message")

    def step(self, run: RunRecord, step_id: str) -> JsonObject:
        return _get(run.steps, step_id, "run step")

    def vector_store(self, store_id: str) -> JsonObject:
        return _get(self.vector_stores, store_id, "vector store")

    # Creation.

    def record(self, request: RecordedRequest) -> None:
        self.requests.append(request)
        if len(self.requests) > self.settings.retain_requests:
            del self.requests[0]

    def add_vector_store(self, body: JsonObject) -> JsonObject:
        file_ids = body.get("file_ids") or []
        store = objects.vector_store(body, [self.file(file_id).obj["bytes"] for file_id in file_ids])
        self.vector_stores[store["id"]] = store
        return store

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(objects.file(filename, purpose, len(content)), content)
        self.files[stored.obj["id"]] = stored
        return stored

    def add_thread(self, body: JsonObject) -> ThreadRecord:
        resources = objects.tool_resources(body, [], self.add_vector_store)
        record = ThreadRecord(objects.thread(body, resources))
        self.threads[record.obj["id"]] = record
        if len(self.threads) > self.settings.retain_threads:
            del self.threads[next(iter(self.threads))]
        for message in body.get("messages") or []:
            self.add_message(record, message)
        return record

    def add_message(self, thread: ThreadRecord, body: JsonObject) -> JsonObject:
        message = objects.message(thread.obj["id"], body)
        thread.messages[message["id"]] = message
        return message

    def add_run(self, thread: ThreadRecord, plan: RunPlan, frames: list[Frame]) -> RunRecord:
        """Register a run from its script; the first frame (`thread.run.created`) is its object."""
        run = RunRecord(dict(frames[0].data), plan)
        thread.runs[run.obj["id"]] = run
        return run

    def register_replay(self, recording: Recording, stream: RecordedStream) -> None:
        """Make the objects a verbatim replay names exist, so later calls on their ids work."""
        first = next(frame.data for frame in stream.frames if frame.is_run_status)
        thread = self.threads.get(first["thread_id"])
        if thread is None:
            stub = {"id": first["thread_id"], "object": "thread", "created_at": first["created_at"], "metadata": {}}
            thread = self.threads.setdefault(stub["id"], ThreadRecord({**stub, "tool_resources": {}}))
        thread.runs.setdefault(first["id"], RunRecord(first, replay_plan(recording)))

    # Run lifecycle.

    def apply(self, frame: Frame) -> None:
        """Record what one script event says happened."""
        data = frame.data
        if not isinstance(data, dict):
            return
        kind = data.get("object")
        if kind == "thread" and (thread := self.threads.get(data["id"])):
            thread.obj = data
        elif kind == "thread.message" and (thread := self.threads.get(data["thread_id"])):
            thread.messages[data["id"]] = data
        elif kind == "thread.run" and (run := self._known_run(data["thread_id"], data["id"])):
            # Metadata may have been updated since the script was written; the update wins.
            run.obj = {**data, "metadata": run.obj["metadata"]}
        elif kind == "thread.run.step" and (run := self._known_run(data["thread_id"], data["run_id"])):
            run.steps[data["id"]] = data

    def advance(self, run: RunRecord) -> None:
        """Move a polled run on to its next status."""
        while run.pending:
            frame = run.pending.popleft()
            self.apply(frame)
            if frame.is_run_status and frame.name != "thread.run.created":
                return

    def settle(self, thread: ThreadRecord) -> None:
        """Finish the thread's polled runs as far as they go on their own.

        Real runs progress without anyone polling; before anything that depends on whether a run is
        still active, let the simulated ones catch up.
        """
        for run in thread.runs.values():
            while run.pending:
                self.apply(run.pending.popleft())

    def active_run(self, thread: ThreadRecord) -> RunRecord | None:
        self.settle(thread)
        return thread.active_run()

    def cancel(self, run: RunRecord) -> None:
        if run.status not in _CANCELLABLE:
            raise bad_request(f"Cannot cancel run with status '{run.status}'.")
        run.obj = {**run.obj, "status": "cancelling"}
        cancelled = {
            **run.obj,
            "status": "cancelled",
            "cancelled_at": objects.now(),
            "expires_at": None,
            "required_action": None,
        }
        run.pending = deque([Frame("thread.run.cancelled", cancelled)])

    def _known_run(self, thread_id: str, run_id: str) -> RunRecord | None:
        thread = self.threads.get(thread_id)
        return thread.runs.get(run_id) if thread else None


SIMULATOR_STATE = web.AppKey("simulator_state", SimulatorState)


def state_of(request: web.Request) -> SimulatorState:
    return request.app[SIMULATOR_STATE]


def _get(table: dict[str, _T], object_id: str, kind: str) -> _T:
    if object_id not in table:
        raise not_found(kind, object_id)
    return table[object_id]
