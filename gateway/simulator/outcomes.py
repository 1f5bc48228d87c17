"""Rewriting a run script so the run ends `failed` or `incomplete` instead of as recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .objects import JsonObject
from .sse import Frame

SERVER_ERROR = {"code": "server_error", "message": "Sorry, something went wrong."}


def fail(frames: list[Frame], usage: Mapping[str, Any], now: int) -> list[Frame]:
    """The run breaks down in its first step: that step and the run end `failed`.

    The real API still bills what was consumed, so the failed run carries the recorded usage.
    """
    if not frames:
        return frames
    kept = frames[: _first_step_start(frames) + 1]
    ending = []
    if kept[-1].name == "thread.run.step.in_progress":
        step = kept[-1].data
        ending.append(
            Frame("thread.run.step.failed", {**step, "status": "failed", "failed_at": now, "last_error": SERVER_ERROR})
        )
    run = next(frame.data for frame in reversed(kept) if frame.is_run_status)
    failed_run = {
        **run,
        "status": "failed",
        "expires_at": None,
        "failed_at": now,
        "required_action": None,
        "last_error": SERVER_ERROR,
        "usage": dict(usage),
    }
    return [*kept, *ending, Frame("thread.run.failed", failed_run)]


def cut_short(frames: list[Frame], now: int) -> list[Frame]:
    """The reply hits `max_completion_tokens`: half its text, message and run end `incomplete`.

    Only a script that ends in `thread.run.completed` is cut; one that stops at `requires_action`
    has no reply yet, the cut happens in its continuation.
    """
    if not frames or frames[-1].name != "thread.run.completed":
        return frames
    deltas = [index for index, frame in enumerate(frames) if frame.name == "thread.message.delta"]
    dropped = set(deltas[(len(deltas) + 1) // 2 :])
    texts: dict[str, str] = {}
    for index in deltas:
        if index not in dropped:
            data = frames[index].data
            texts[data["id"]] = texts.get(data["id"], "") + _delta_text(data)
    return [_ending(frame, texts, now) for index, frame in enumerate(frames) if index not in dropped]


def _ending(frame: Frame, texts: Mapping[str, str], now: int) -> Frame:
    if frame.name == "thread.message.completed":
        message = _incomplete_message(frame.data, texts.get(frame.data["id"], ""), now)
        return Frame("thread.message.incomplete", message)
    if frame.name == "thread.run.completed":
        return Frame("thread.run.incomplete", _incomplete_run(frame.data))
    return frame


def _first_step_start(frames: list[Frame]) -> int:
    names = [frame.name for frame in frames]
    for name in ("thread.run.step.in_progress", "thread.run.in_progress"):
        if name in names:
            return names.index(name)
    return len(frames) - 1


def _delta_text(delta: JsonObject) -> str:
    parts = delta["delta"].get("content", [])
    return "".join(part["text"].get("value", "") for part in parts if part.get("type") == "text")


def _incomplete_message(message: JsonObject, text: str, now: int) -> JsonObject:
    return {
        **message,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_tokens"},
        "incomplete_at": now,
        "completed_at": None,
        "content": [_truncated(part, text) for part in message["content"]],
    }


def _truncated(part: JsonObject, text: str) -> JsonObject:
    if part.get("type") != "text":
        return part
    annotations = [note for note in part["text"].get("annotations", []) if note.get("end_index", 0) <= len(text)]
    return {"type": "text", "text": {"value": text, "annotations": annotations}}


def _incomplete_run(run: JsonObject) -> JsonObject:
    return {**run, "status": "incomplete", "incomplete_details": {"reason": "max_completion_tokens"}}
