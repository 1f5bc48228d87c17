"""The recorded Responses API traffic (`recordings/responses/`, VCR cassettes of api.openai.com), and
what the simulator builds from it.

Each cassette's `POST /v1/responses` exchanges, in recorded order, are what `X-Simulator-Replay:
<stem>[#<n>]` names. An exchange was recorded either streamed (the whole SSE body, kept to the byte)
or as a JSON object; either can be served both ways: a JSON response is streamed with the events the
real API sends for its items (`stream_of`), a stream answers non-streamed with its final response.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from .objects import JsonObject
from .sse import Frame, parse_frame

TERMINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}
_EVENTS = re.compile(r".*?\n\n|.+\Z", re.DOTALL)
_RESPONSE_ID = re.compile(r"/v1/responses/(resp_[0-9a-zA-Z]+)")
# Where a delta ends: after the whitespace that follows a word, as the model's tokens mostly do.
_WORD_END = re.compile(r"(?<=\s)(?=\S)")


@dataclass(frozen=True)
class Exchange:
    """One recorded `POST /v1/responses` and its answer."""

    stem: str
    index: int
    request: JsonObject  # the recorded request body
    status: int
    stream: str | None  # the SSE body, exactly as recorded, if the answer was streamed
    body: Any  # the JSON answer otherwise (a response object, or an error envelope)
    polls: tuple[JsonObject, ...]  # the answers of later `GET /v1/responses/{id}` (background mode)

    @property
    def name(self) -> str:
        return f"{self.stem}#{self.index}"

    def recorded_frames(self) -> list[Frame]:
        """The recorded stream as frames that keep their recorded bytes."""
        assert self.stream is not None
        events = _EVENTS.findall(self.stream)  # one piece per event, so the replay writes one chunk each
        return [parse_frame((event,)) for event in events if event.strip()]

    def final(self) -> JsonObject:
        """The response as it ended."""
        if self.stream is None:
            return dict(self.body)
        ends = [f.data["response"] for f in self.recorded_frames() if f.name in TERMINAL_EVENTS.values()]
        return dict(ends[-1])

    def frames(self) -> list[Frame]:
        """The answer as stream events: recorded ones, or the ones the real API sends for it."""
        return self.recorded_frames() if self.stream is not None else stream_of(self.final())


@functools.cache
def load_exchanges() -> dict[str, tuple[Exchange, ...]]:
    """Every packaged cassette's `POST /v1/responses` exchanges, by cassette stem (parsed once)."""
    root = resources.files(__package__).joinpath("recordings", "responses")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[str, tuple[Exchange, ...]] = {}
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            stem = entry.name.removesuffix(".yaml")
            found[stem] = tuple(_exchanges(stem, yaml.load(entry.read_text(encoding="utf-8"), Loader=loader)))
    return found


def _exchanges(stem: str, cassette: JsonObject) -> Iterator[Exchange]:
    interactions = cassette.get("interactions") or []
    posts = [
        i for i in interactions if i["request"]["method"] == "POST" and i["request"]["uri"].endswith("/v1/responses")
    ]
    for index, interaction in enumerate(posts):
        answer = interaction["response"]
        raw = (answer.get("body") or {}).get("string")
        stream = raw if isinstance(raw, str) and raw.startswith("event:") else None
        body = answer.get("parsed_body")
        response_id = body.get("id") if isinstance(body, dict) else None
        polls = tuple(
            i["response"]["parsed_body"]
            for i in interactions
            if i["request"]["method"] == "GET"
            and (m := _RESPONSE_ID.search(i["request"]["uri"]))
            and m.group(1) == response_id
        )
        request = interaction["request"].get("parsed_body") or {}
        yield Exchange(stem, index, request, answer["status"]["code"], stream, body, polls)


def stream_of(response: JsonObject) -> list[Frame]:
    """The events the real API streams for `response`: created, in_progress, each output item
    added, filled in (text deltas word by word, arguments, search progress) and done, then the end."""
    events: list[JsonObject] = []
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    if "completed_at" in start:
        start["completed_at"] = None
    events.append({"type": "response.created", "response": start})
    events.append({"type": "response.in_progress", "response": start})
    for index, item in enumerate(response.get("output") or ()):
        events.extend(_item_events(index, item))
    events.append({"type": TERMINAL_EVENTS.get(response.get("status", ""), "response.completed"), "response": response})
    return [Frame(event["type"], {**event, "sequence_number": n}) for n, event in enumerate(events)]


def _item_events(index: int, item: JsonObject) -> Iterator[JsonObject]:
    kind, item_id = item.get("type"), item.get("id")
    at = {"item_id": item_id, "output_index": index}
    opening = {**item, "status": "in_progress"} if "status" in item else dict(item)
    if kind == "message":
        opening["content"] = []
    elif kind == "function_call":
        opening["arguments"] = ""
    elif kind == "file_search_call":
        opening["results"] = None
    yield {"type": "response.output_item.added", "output_index": index, "item": opening}
    if kind == "message":
        for part_index, part in enumerate(item.get("content") or ()):
            yield from _part_events({**at, "content_index": part_index}, part)
    elif kind == "function_call":
        yield {"type": "response.function_call_arguments.delta", **at, "delta": item.get("arguments", "")}
        yield {"type": "response.function_call_arguments.done", **at, "arguments": item.get("arguments", "")}
    elif kind == "file_search_call":
        for stage in ("in_progress", "searching", "completed"):
            yield {"type": f"response.file_search_call.{stage}", **at}
    yield {"type": "response.output_item.done", "output_index": index, "item": item}


def _part_events(at: JsonObject, part: JsonObject) -> Iterator[JsonObject]:
    if part.get("type") != "output_text":
        yield {"type": "response.content_part.added", **at, "part": part}
        yield {"type": "response.content_part.done", **at, "part": part}
        return
    text = part.get("text", "")
    yield {"type": "response.content_part.added", **at, "part": {**part, "text": "", "annotations": []}}
    for piece in _WORD_END.split(text):
        if piece:
            yield {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
    for number, annotation in enumerate(part.get("annotations") or ()):
        yield {
            "type": "response.output_text.annotation.added",
            **at,
            "annotation_index": number,
            "annotation": annotation,
        }
    yield {"type": "response.output_text.done", **at, "text": text, "logprobs": []}
    yield {"type": "response.content_part.done", **at, "part": part}
