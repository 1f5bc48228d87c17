"""Loading the recorded OpenAI transcripts shipped in `recordings/` (see SOURCES.txt there).

Only the SSE responses matter to the simulator: each becomes a `RecordedStream` of frames that keep
their recorded pieces, so the same parse serves both verbatim replay and id-substituted playback.
Two formats are read: openai-dotnet session records (JSON, a streamed `ResponseBody` is a list of
strings) and vcrpy cassettes (YAML, the body is one string).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

from .sse import Frame, group_events, parse_frame

SSE_MEDIA_TYPE = "text/event-stream"
# Any object or tool-call id OpenAI mints; these are what playback substitutes.
_ID_PATTERN = re.compile(r"(?:thread|run|asst|step|msg|call)_[A-Za-z0-9]{8,}")
# One event of a body recorded as a single string: everything up to and including the blank line.
_SSE_EVENT = re.compile(r".*?\n\n|.+\Z", re.DOTALL)


class CallKind(StrEnum):
    CREATE_THREAD_AND_RUN = "create-thread-and-run"
    CREATE_RUN = "create-run"
    SUBMIT_TOOL_OUTPUTS = "submit-tool-outputs"


@dataclass(frozen=True)
class RecordedStream:
    kind: CallKind
    status: int
    content_type: str
    frames: tuple[Frame, ...]

    @property
    def body(self) -> bytes:
        return b"".join(chunk for frame in self.frames for chunk in frame.chunks())


@dataclass(frozen=True)
class Recording:
    name: str  # the file stem, which is also the `X-Simulator-Replay` value
    streams: Mapping[CallKind, RecordedStream]
    ids: frozenset[str]  # every id the streams mention
    function_names: tuple[str, ...]  # functions the recorded model called, in call order
    final_usage: Mapping[str, Any]  # usage of the recorded run's terminal event

    @property
    def opening(self) -> RecordedStream:
        """The stream that starts the run (a recording holds one of the two creation calls)."""
        for kind in (CallKind.CREATE_THREAD_AND_RUN, CallKind.CREATE_RUN):
            if kind in self.streams:
                return self.streams[kind]
        raise LookupError(f"recording {self.name} has no run-creating stream")

    @property
    def continuation(self) -> RecordedStream | None:
        return self.streams.get(CallKind.SUBMIT_TOOL_OUTPUTS)


def load_recordings() -> dict[str, Recording]:
    """Every recording shipped with the package, by file stem."""
    root = resources.files(__package__).joinpath("recordings")
    recordings = {}
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".json"):
            streams = list(_dotnet_streams(json.loads(entry.read_text(encoding="utf-8"))))
        elif entry.name.endswith(".yaml"):
            streams = list(_vcr_streams(yaml.safe_load(entry.read_text(encoding="utf-8"))))
        else:
            continue
        name = entry.name.rsplit(".", 1)[0]
        recordings[name] = _recording(name, streams)
    return recordings


def _recording(name: str, streams: list[RecordedStream]) -> Recording:
    frames = [frame for stream in streams for frame in stream.frames]
    text = "".join(piece for frame in frames for piece in frame.raw or ())
    terminal = [f.data for f in frames if f.name == "thread.run.completed"]
    return Recording(
        name=name,
        streams={stream.kind: stream for stream in streams},
        ids=frozenset(_ID_PATTERN.findall(text)),
        function_names=tuple(_called_functions(frames)),
        final_usage=terminal[-1]["usage"] if terminal else {},
    )


def _called_functions(frames: list[Frame]) -> Iterator[str]:
    for frame in frames:
        if frame.name == "thread.run.requires_action":
            for call in frame.data["required_action"]["submit_tool_outputs"]["tool_calls"]:
                yield call["function"]["name"]


def _call_kind(method: str, uri: str) -> CallKind | None:
    path = urlsplit(uri).path.rstrip("/")
    if method != "POST":
        return None
    if path == "/v1/threads/runs":
        return CallKind.CREATE_THREAD_AND_RUN
    if path.endswith("/submit_tool_outputs"):
        return CallKind.SUBMIT_TOOL_OUTPUTS
    if re.fullmatch(r"/v1/threads/[^/]+/runs", path):
        return CallKind.CREATE_RUN
    return None


def _stream(kind: CallKind | None, status: int, content_type: str, pieces: list[str]) -> RecordedStream | None:
    if kind is None or not content_type.startswith(SSE_MEDIA_TYPE):
        return None
    frames = tuple(parse_frame(raw) for raw in group_events(pieces))
    return RecordedStream(kind, status, content_type, frames)


def _dotnet_streams(record: dict[str, Any]) -> Iterator[RecordedStream]:
    for entry in record["Entries"]:
        body = entry["ResponseBody"]
        if not isinstance(body, list):
            continue
        kind = _call_kind(entry["RequestMethod"], entry["RequestUri"])
        content_type = entry["ResponseHeaders"].get("Content-Type", "")
        if stream := _stream(kind, entry["StatusCode"], content_type, body):
            yield stream


def _vcr_streams(cassette: dict[str, Any]) -> Iterator[RecordedStream]:
    for interaction in cassette["interactions"]:
        request, response = interaction["request"], interaction["response"]
        body = response["body"]["string"]
        if not isinstance(body, str):  # gzip `!!binary` JSON bodies: never a stream
            continue
        kind = _call_kind(request["method"], request["uri"])
        content_type = response["headers"].get("Content-Type", [""])[0]
        pieces = _SSE_EVENT.findall(body)
        if stream := _stream(kind, response["status"]["code"], content_type, pieces):
            yield stream
