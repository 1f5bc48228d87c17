"""The server-sent-events wire format the Assistants API streams in.

A `Frame` is one SSE event. Frames parsed from a recording keep their recorded pieces so a verbatim
replay can write the exact bytes (and the exact chunking) that OpenAI sent; frames the simulator
builds are encoded the way OpenAI encodes them: compact JSON, `event: <name>\\ndata: <json>\\n\\n`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

DONE_DATA = "[DONE]"


@dataclass(frozen=True, slots=True)
class Frame:
    name: str
    # Parsed JSON payload, or the literal "[DONE]" of the final `done` event.
    data: Any
    # The recorded pieces (e.g. "event: x\n" and "data: {...}\n\n"); None for built frames.
    raw: tuple[str, ...] | None = None

    @property
    def is_run_status(self) -> bool:
        """A `thread.run.<status>` event: its data is the whole run object."""
        return self.name.startswith("thread.run.") and not self.name.startswith("thread.run.step.")

    def chunks(self) -> list[bytes]:
        """What goes on the wire: the recorded pieces, or the event encoded as one chunk."""
        if self.raw is not None:
            return [piece.encode() for piece in self.raw]
        payload = self.data if isinstance(self.data, str) else orjson.dumps(self.data).decode()
        return [f"event: {self.name}\ndata: {payload}\n\n".encode()]


DONE = Frame("done", DONE_DATA)


def parse_frame(raw: tuple[str, ...]) -> Frame:
    """Parse one recorded event (possibly split over several pieces) into a frame."""
    name, data = "message", ""
    for line in "".join(raw).splitlines():
        field, _, value = line.partition(": ")
        if field == "event":
            name = value
        elif field == "data":
            data = value
    return Frame(name, data if data == DONE_DATA else orjson.loads(data), raw)


def group_events(pieces: Iterable[str]) -> list[tuple[str, ...]]:
    """Group recorded body pieces into events: an event ends with the blank line after its data."""
    events: list[tuple[str, ...]] = []
    pending: list[str] = []
    for piece in pieces:
        pending.append(piece)
        if piece.endswith("\n\n"):
            events.append(tuple(pending))
            pending = []
    if pending:
        events.append(tuple(pending))
    return events
