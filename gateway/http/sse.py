"""Incremental Server-Sent Events parser.

Pure: it is fed the bytes exactly as they leave the upstream socket (events split anywhere, CRLF,
CR or LF line ends, multi-line `data`, comments, unknown fields) and returns whole events. The
relay never waits on it: it only observes bytes that have already been sent to the client.
Follows the WHATWG "event stream interpretation" rules.
"""

from __future__ import annotations

import re

from gateway.domain import SSEEvent

_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Feed chunks, get events. Lines longer than `max_line_bytes` stop observation (not relay)."""

    __slots__ = ("_buf", "_skip_lf", "_event", "_data", "_id", "_max_line", "overflowed")

    def __init__(self, max_line_bytes: int = 16 * 1024 * 1024) -> None:
        self._buf = b""
        self._skip_lf = False  # a chunk ended in CR: a leading LF of the next chunk belongs to it
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._max_line = max_line_bytes
        self.overflowed = False

    @property
    def pending(self) -> bool:
        """True while a partial line or an undispatched event is held."""
        return bool(self._buf or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self.overflowed or not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        data = self._buf + chunk if self._buf else chunk
        if b"\r" in data:
            lines = _LINE_END.split(data)
            self._skip_lf = data.endswith(b"\r")
            self._buf = lines.pop()  # after the last line end: a partial line, or b""
            events = self._lines(lines)
        else:  # LF only, as every upstream we know writes (a stream's hottest loop)
            events = self._blocks(data)
        if len(self._buf) > self._max_line:
            self.overflowed = True
            self._buf = b""
        return events

    def _blocks(self, data: bytes) -> list[SSEEvent]:
        """LF-only bytes, whole events at a time: the usual `event: NAME` + one `data:` line is made in
        one step, anything else line by line. (Each block's lines are its text split on LF, and the
        blank line that ended it.)"""
        *blocks, tail = data.split(b"\n\n")
        events: list[SSEEvent] = []
        for block in blocks:
            if block.startswith(b"event: ") and not (self._data or self._event):
                head, _, rest = block.partition(b"\n")
                if rest.startswith(b"data: ") and b"\n" not in rest:
                    name = head[7:].decode("utf-8", "replace") or "message"
                    events.append(SSEEvent(name, rest[6:].decode("utf-8", "replace"), self._id))
                    continue
            events += self._lines(block.split(b"\n"))
            if (event := self._dispatch()) is not None:
                events.append(event)
        lines = tail.split(b"\n")
        self._buf = lines.pop()
        return events + self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", "replace")
        if name == b"data":
            self._data.append(text)
        elif name == b"event":
            self._event = text
        elif name == b"id" and "\0" not in text:
            self._id = text
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event = ""
        self._data = []
        return event
