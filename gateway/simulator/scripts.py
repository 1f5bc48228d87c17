"""The script of a simulated run: a recording's events rewritten to describe the simulator's objects.

Every id the recording mentions is mapped to a fresh one (thread, run and assistant to the real
ones), timestamps are moved to the run's own timeline, and run objects carry the run's actual
configuration (model, instructions, tools, metadata ...). The text, tool calls and usage stay as
recorded. One id map per run keeps the two halves of a tool-call run (opening stream and the stream
after `submit_tool_outputs`) consistent, so the call id in `requires_action` is the one accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import Outcome
from .objects import JsonObject, new_id, tool_types
from .outcomes import cut_short, fail
from .recordings import Recording
from .sse import Frame

DEFAULT_RECORDING = "openai-dotnet__StreamingRunWorks"
# First match wins: function tools must win, the recording of that flow is the one that stops for them.
RECORDING_FOR_TOOL = (
    ("function", "openai-dotnet__StreamingToolCall"),
    ("file_search", "openai-dotnet__FileSearchStreamingWorks"),
    ("code_interpreter", "openllmetry__test_streaming_new_assistant"),
)
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
_TIMESTAMPS = frozenset(
    {"created_at", "started_at", "expires_at", "cancelled_at", "failed_at", "completed_at", "incomplete_at"}
)
# Events a run script leaves out: the thread is announced by the endpoint, `done` by the writer.
_NOT_IN_SCRIPT = frozenset({"thread.created", "done"})


def choose_recording(recordings: Mapping[str, Recording], tools: list[JsonObject]) -> Recording:
    present = tool_types(tools)
    for tool, name in RECORDING_FOR_TOOL:
        if tool in present:
            return recordings[name]
    return recordings[DEFAULT_RECORDING]


@dataclass(frozen=True)
class Substitution:
    """Rewrites recorded values: exact-match strings (ids, function names) and timestamps."""

    strings: Mapping[str, str] = field(default_factory=dict)
    offset: int = 0  # seconds between the recorded run's creation and this run's

    def apply(self, value: Any, now: int) -> Any:
        if isinstance(value, dict):
            return {key: self._field(key, item, now) for key, item in value.items()}
        if isinstance(value, list):
            return [self.apply(item, now) for item in value]
        if isinstance(value, str):
            return self.strings.get(value, value)
        return value

    def _field(self, key: str, value: Any, now: int) -> Any:
        if key not in _TIMESTAMPS or type(value) is not int:
            return self.apply(value, now)
        shifted = value + self.offset
        # The recorded run took seconds that a fast replay does not: never report a moment still to
        # come, except the expiry, which is meant to lie ahead.
        return shifted if key == "expires_at" else min(shifted, now)


@dataclass(frozen=True)
class RunPlan:
    recording: Recording
    substitution: Substitution
    config: Mapping[str, Any]  # laid over every run object of the script
    include: frozenset[str] | None  # the run's `include[]`; None keeps everything (verbatim replays)
    outcome: Outcome | None = None
    cached_tokens: int | None = None  # of each usage's prompt, reported as read from the cache

    def opening(self, now: int) -> list[Frame]:
        """From `thread.run.created` up to the run's end, or to `requires_action`."""
        return self._conclude(self._build(self.recording.opening.frames, now, {}), now)

    def after_tool_outputs(self, outputs: Mapping[str, str], now: int) -> list[Frame]:
        stream = self.recording.continuation
        frames = self._build(stream.frames, now, outputs) if stream else []
        return self._conclude(frames, now)

    def _build(self, frames: Iterable[Frame], now: int, outputs: Mapping[str, str]) -> list[Frame]:
        return [self._rewrite(frame, now, outputs) for frame in frames if frame.name not in _NOT_IN_SCRIPT]

    def _rewrite(self, frame: Frame, now: int, outputs: Mapping[str, str]) -> Frame:
        data = self.substitution.apply(frame.data, now)
        if data.get("object") == "thread.run":
            data.update(self.config)
        if self.cached_tokens is not None and isinstance(data.get("usage"), dict):
            usage = data["usage"]
            usage["prompt_token_details"] = {"cached_tokens": min(self.cached_tokens, usage.get("prompt_tokens", 0))}
        for call in _tool_calls(data):
            if call.get("type") == "function" and call.get("id") in outputs:
                call["function"]["output"] = outputs[call["id"]]
            elif call.get("type") == "file_search" and not self._includes_search_content:
                for result in call["file_search"].get("results", []):
                    result.pop("content", None)
        return Frame(frame.name, data)  # built anew: no longer the recorded bytes

    @property
    def _includes_search_content(self) -> bool:
        # As in the API, file_search results carry their content only when `include[]` asks for it.
        return self.include is None or FILE_SEARCH_CONTENT in self.include

    def _conclude(self, frames: list[Frame], now: int) -> list[Frame]:
        if self.outcome is Outcome.FAILED:
            return fail(frames, self.recording.final_usage, now)
        if self.outcome is Outcome.INCOMPLETE:
            return cut_short(frames, now)
        return frames


def plan_run(
    recording: Recording,
    *,
    thread_id: str,
    assistant_id: str,
    config: Mapping[str, Any],
    include: frozenset[str],
    outcome: Outcome | None,
    now: int,
    cached_tokens: int | None = None,
) -> RunPlan:
    recorded = recording.opening.frames
    first_run = next(frame.data for frame in recorded if frame.name == "thread.run.created")
    strings = {recorded_id: new_id(recorded_id.partition("_")[0]) for recorded_id in recording.ids}
    strings[first_run["thread_id"]] = thread_id
    strings[first_run["assistant_id"]] = assistant_id
    functions = [tool["function"]["name"] for tool in config["tools"] if tool["type"] == "function"]
    strings.update(zip(recording.function_names, functions, strict=False))
    substitution = Substitution(strings, offset=now - first_run["created_at"])
    return RunPlan(recording, substitution, config, include, outcome, cached_tokens)


def replay_plan(recording: Recording) -> RunPlan:
    """The plan of a run replayed verbatim: its recorded ids and settings, unchanged."""
    return RunPlan(recording, Substitution(), config={}, include=None)


def _tool_calls(data: JsonObject) -> list[JsonObject]:
    """The tool calls of a run step or of a run step delta (mutable: they belong to `data`)."""
    kind = data.get("object")
    if kind == "thread.run.step.delta":
        data = data["delta"]
    elif kind != "thread.run.step":
        return []
    calls: list[JsonObject] = (data.get("step_details") or {}).get("tool_calls", [])
    return calls
