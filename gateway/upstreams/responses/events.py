"""Responses stream events → the Assistants run events the official SDK expects. Pure.

One `RunEvents` per response of a run: it is told the Responses events as they arrive and answers
with the Assistants frames to write at once, in the order `AssistantEventHandler` relies on:

    thread.created (a new thread) → thread.run.created → thread.run.queued → thread.run.in_progress
    → per output item: thread.run.step.created / in_progress, then
        a message:    thread.message.created / in_progress / delta… / completed, step completed
        a tool call:  thread.run.step.delta… (function arguments) ; step stays in progress
    → thread.run.requires_action (function calls wait for their outputs)
      | thread.run.completed | incomplete | failed | cancelled, with the usage of every response so far
    → done

Unknown event types are skipped (the upstream may know more than this translator does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.domain import SSEEvent, json_object
from gateway.upstreams.responses import objects
from gateway.upstreams.responses.objects import INCOMPLETE_REASONS, JsonObject, RunSpec

DONE = b"event: done\ndata: [DONE]\n\n"


def frame(event: str, data: JsonObject) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@dataclass(slots=True)
class _Item:
    """An output item being streamed: its message text or its tool call so far."""

    kind: str  # message | function_call | tool (file search, code interpreter: run by the upstream)
    item_id: str
    created_at: int
    text: list[str] = field(default_factory=list)
    call: JsonObject | None = None


@dataclass(slots=True)
class RunEvents:
    spec: RunSpec
    new_thread: JsonObject | None = None  # announced first: create-thread-and-run made it
    prior_usage: JsonObject | None = None  # earlier responses of the same run (tool rounds)
    continuing: bool = False  # a submit_tool_outputs stream: the run exists, it goes back to in progress
    clock: Callable[[], float] = time.time
    usage: JsonObject | None = None  # the run's usage so far, once a response reports its own
    status: str | None = None  # the run's status once this response ended it (or paused it)
    tool_calls: list[JsonObject] = field(default_factory=list)  # function calls awaiting outputs
    last_run: JsonObject | None = None  # the run object as the latest run event showed it
    message_ids: list[str] = field(default_factory=list)  # the messages this response wrote
    started_at: int | None = None  # when the run went in progress
    response_id: str | None = None  # the upstream response, once it has said its id
    announced: list[JsonObject] = field(default_factory=list)  # steps to show completed first (tool outputs given)
    kept: bool = False  # whether the state store has the run yet (the thread lists it from then on)
    output: list[JsonObject] = field(default_factory=list)  # this response's output items, as they ended
    steps: dict[str, JsonObject] = field(default_factory=dict)  # the run steps so far, by id, in order
    _items: dict[str, _Item] = field(default_factory=dict)

    def start(self) -> bytes:
        """What the client sees before the upstream says anything."""
        if self.continuing:
            steps = [frame("thread.run.step.completed", step) for step in self.announced]
            return b"".join([frame("thread.run.queued", self._run("queued")), *steps])
        out = [frame("thread.created", self.new_thread)] if self.new_thread is not None else []
        out.append(frame("thread.run.created", self._run("queued")))
        out.append(frame("thread.run.queued", self._run("queued")))
        return b"".join(out)

    def feed(self, event: SSEEvent) -> bytes:
        data = json_object(event.data)
        kind = data.get("type")
        handler = _HANDLERS.get(kind if isinstance(kind, str) else event.event)
        return b"".join(handler(self, data)) if handler is not None else b""

    def end(self) -> bytes:
        """The upstream stream is over: a run it left unfinished has failed; then `done`."""
        if self.status is None:
            self.status = "failed"
            error = {"code": "server_error", "message": "The upstream response ended before the run finished."}
            return frame("thread.run.failed", self._run("failed", failed_at=self._now(), last_error=error)) + DONE
        return DONE

    def cut_short(self, reason: str) -> bytes:
        """The run ends before its response is asked for (its prompt is over `max_prompt_tokens`)."""
        self.status = "incomplete"
        self.usage = objects.add_usage(self.prior_usage, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
        details = {"reason": reason}
        return frame("thread.run.incomplete", self._run("incomplete", incomplete_details=details, usage=self.usage)) + DONE

    def follow(self, response: Mapping[str, Any]) -> None:
        """A response read whole (background mode, polled): the run as it now stands, as if streamed."""
        self._created({"response": response})
        status = response.get("status")
        if status in ("queued", "in_progress"):
            if status == "in_progress" and self.started_at is None:
                self.started_at = self._now()
            self._run(str(status))
            return
        if self.started_at is None:
            self.started_at = self._now()
        for item in response.get("output") or ():  # (the frames go nowhere: nobody is streaming)
            _ = [*self._item_added({"item": item}), *self._item_done({"item": item})]
        self.ended(response)

    def ended(self, response: Mapping[str, Any]) -> bytes:
        """How the response ended, read whole after its stream stopped short (cancelled, say)."""
        if response.get("status") in ("queued", "in_progress"):
            return b""
        return b"".join(self._finished({"response": response}))

    # --- per Responses event -------------------------------------------------------------------

    def _created(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        response_id = json_path(data, "response", "id")
        if isinstance(response_id, str):
            self.response_id = response_id
        return ()

    def _in_progress(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        if self.started_at is None:
            self.started_at = self._now()
        yield frame("thread.run.in_progress", self._run("in_progress"))

    def _item_added(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        item = data.get("item")
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            return
        now, item_id = self._now(), item["id"]
        if item.get("type") == "message":
            self._items[item_id] = _Item("message", item_id, now)
            self.message_ids.append(item_id)
            details = {"type": "message_creation", "message_creation": {"message_id": item_id}}
            yield from self._step_opened(item_id, now, details)
            yield frame("thread.message.created", objects.message(self.spec, item_id, now, "in_progress", None))
            yield frame("thread.message.in_progress", objects.message(self.spec, item_id, now, "in_progress", None))
        elif item.get("type") == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": "", "output": None}}  # fmt: skip
            self._items[item_id] = _Item("function_call", item_id, now, call=call)
            yield from self._step_opened(item_id, now, {"type": "tool_calls", "tool_calls": [call]})
        elif item.get("type") in _BUILT_IN_CALLS:
            call = objects.tool_call(item)
            self._items[item_id] = _Item("tool", item_id, now, call=call)
            yield from self._step_opened(item_id, now, {"type": "tool_calls", "tool_calls": [call]})

    def _text_delta(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        item = self._items.get(str(data.get("item_id")))
        delta = data.get("delta")
        if item is None or item.kind != "message" or not isinstance(delta, str):
            return
        item.text.append(delta)
        part = {"index": data.get("content_index", 0), "type": "text", "text": {"value": delta, "annotations": []}}
        yield frame("thread.message.delta", {"id": item.item_id, "object": "thread.message.delta",
                                             "delta": {"content": [part]}})  # fmt: skip

    def _arguments_delta(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        item = self._items.get(str(data.get("item_id")))
        delta = data.get("delta")
        if item is None or item.call is None or not isinstance(delta, str):
            return
        item.call["function"]["arguments"] += delta
        call = {"index": 0, "id": item.call["id"], "type": "function", "function": {"arguments": delta}}
        yield frame("thread.run.step.delta", {"id": objects.step_id_of(item.item_id), "object": "thread.run.step.delta",
                                              "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}}})  # fmt: skip

    def _code_delta(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        item = self._items.get(str(data.get("item_id")))
        delta = data.get("delta")
        if item is None or item.call is None or item.call["type"] != "code_interpreter" or not isinstance(delta, str):
            return
        item.call["code_interpreter"]["input"] += delta
        call = {"index": 0, "id": item.call["id"], "type": "code_interpreter", "code_interpreter": {"input": delta}}
        yield frame("thread.run.step.delta", {"id": objects.step_id_of(item.item_id), "object": "thread.run.step.delta",
                                              "delta": {"step_details": {"type": "tool_calls", "tool_calls": [call]}}})  # fmt: skip

    def _item_done(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        done = data.get("item")
        item = self._items.get(str(done.get("id"))) if isinstance(done, Mapping) else None
        if item is None or not isinstance(done, Mapping):
            return
        self.output.append(dict(done))
        now = self._now()
        if item.kind == "message":
            text = _output_text(done) or "".join(item.text)
            yield frame("thread.message.completed",
                        objects.message(self.spec, item.item_id, item.created_at, "completed", text, completed_at=now))  # fmt: skip
            details = {"type": "message_creation", "message_creation": {"message_id": item.item_id}}
            yield frame("thread.run.step.completed", self._step(item, "completed", details, completed_at=now))
        elif item.kind == "tool":
            ran: JsonObject = {"type": "tool_calls", "tool_calls": [objects.tool_call(done)]}
            yield frame("thread.run.step.completed", self._step(item, "completed", ran, completed_at=now))
        elif item.call is not None:
            if isinstance(done.get("arguments"), str):
                item.call["function"]["arguments"] = done["arguments"]
            self._step(item, "in_progress", {"type": "tool_calls", "tool_calls": [item.call]})  # awaits its output
            self.tool_calls.append({"id": item.call["id"], "type": "function",
                                    "function": {"name": item.call["function"]["name"],
                                                 "arguments": item.call["function"]["arguments"]}})  # fmt: skip

    def _finished(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        found = data.get("response")
        response: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        self.usage = objects.add_usage(self.prior_usage, objects.usage(response.get("usage")))
        now, status = self._now(), response.get("status")
        if status == "completed" and self.tool_calls:
            self.status = "requires_action"
            action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": self.tool_calls}}
            yield frame("thread.run.requires_action", self._run("requires_action", required_action=action))
        elif status == "completed":
            self.status = "completed"
            yield frame("thread.run.completed", self._run("completed", completed_at=now, usage=self.usage))
        elif status == "incomplete":
            self.status = "incomplete"
            reason = json_path(response, "incomplete_details", "reason")
            details = {"reason": INCOMPLETE_REASONS.get(str(reason), str(reason))}
            yield frame("thread.run.incomplete", self._run("incomplete", incomplete_details=details, usage=self.usage))
        elif status == "cancelled":
            self.status = "cancelled"
            yield frame("thread.run.cancelled", self._run("cancelled", cancelled_at=now, usage=self.usage))
        else:
            yield from self._failed(response.get("error"))

    def _error(self, data: Mapping[str, Any]) -> Iterable[bytes]:
        yield from self._failed(data.get("error") if isinstance(data.get("error"), Mapping) else data)

    def _failed(self, error: object) -> Iterable[bytes]:
        self.status = "failed"
        error = error if isinstance(error, Mapping) else {}
        last_error = {"code": _error_code(error.get("code")), "message": str(error.get("message") or "The run failed.")}
        yield frame("thread.run.failed", self._run("failed", failed_at=self._now(), last_error=last_error, usage=self.usage))

    # --- helpers ---------------------------------------------------------------------------------

    def _step_opened(self, item_id: str, now: int, details: JsonObject) -> Iterable[bytes]:
        step = self.steps[objects.step_id_of(item_id)] = objects.step(
            self.spec, objects.step_id_of(item_id), now, "in_progress", details
        )
        yield frame("thread.run.step.created", step)
        yield frame("thread.run.step.in_progress", step)

    def _step(self, item: _Item, status: str, details: JsonObject, **fields: Any) -> JsonObject:
        step_id = objects.step_id_of(item.item_id)
        self.steps[step_id] = objects.step(self.spec, step_id, item.created_at, status, details, **fields)
        return self.steps[step_id]

    def _run(self, status: str, **fields: Any) -> JsonObject:
        self.last_run = objects.run(self.spec, status, started_at=self.started_at, **fields)
        return self.last_run

    def _now(self) -> int:
        return int(self.clock())


def json_path(node: Any, *keys: str) -> Any:
    """`node[k1][k2]…`, or None where a level is missing or not an object."""
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _output_text(item: Mapping[str, Any]) -> str:
    content = item.get("content")
    parts = content if isinstance(content, list) else []
    return "".join(p["text"] for p in parts if isinstance(p, Mapping) and isinstance(p.get("text"), str))


def _error_code(code: object) -> str:
    """The Assistants API's `last_error.code` has three values; everything else is a server error."""
    return str(code) if code in ("rate_limit_exceeded", "invalid_prompt") else "server_error"


_BUILT_IN_CALLS = ("file_search_call", "code_interpreter_call")

_HANDLERS: dict[str, Callable[[RunEvents, Mapping[str, Any]], Iterable[bytes]]] = {
    "response.created": RunEvents._created,
    "response.in_progress": RunEvents._in_progress,
    "response.output_item.added": RunEvents._item_added,
    "response.output_text.delta": RunEvents._text_delta,
    "response.function_call_arguments.delta": RunEvents._arguments_delta,
    "response.code_interpreter_call_code.delta": RunEvents._code_delta,
    "response.output_item.done": RunEvents._item_done,
    "response.completed": RunEvents._finished,
    "response.incomplete": RunEvents._finished,
    "response.failed": RunEvents._finished,
    "response.cancelled": RunEvents._finished,
    "error": RunEvents._error,
}
