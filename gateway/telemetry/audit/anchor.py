"""Checkpoints: where the audit chain stands, signed, in a second file, so verify sees what a chain
alone cannot show: records cut from its end, records removed from a file's start, an emptied file.

One JSON line per checkpoint, HMAC-SHA256'd with `audit.mac_key` over its canonical form without `mac`:

    {"event": "start", "seq": N, "hash": H, "first": F, "time", "mac"}   a file begins after seq N
        (hash H) with the record whose hash is F: written when a file is begun (a new chain: N = 0)
    {"event": "head", "seq": N, "hash": H, "time", "mac"}   the last record written was seq N (hash H):
        written every `interval_s` while the chain moves, and when the writer stops

Verify finds the `start` that marks where the log begins (none: its first records were removed),
then holds the log to every checkpoint after it up to the end of the log's files: each seq vouched
for must be in the log with that hash, and none may lie past its end.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from gateway.config.audit import CheckpointConfig
from gateway.telemetry.audit.chain import GENESIS, ChainHead, VerifyReport, canonical

log = structlog.get_logger("gateway.audit")


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    return hmac.new(key, canonical(fields), hashlib.sha256).hexdigest()


class Checkpoints:
    """The writer's side, called from the audit writer's thread only."""

    def __init__(self, config: CheckpointConfig, key: bytes, clock: Any = time.monotonic) -> None:
        self._path = Path(config.path)
        self._interval_s = config.interval_s
        self._key = key
        self._clock = clock
        self._last: ChainHead | None = None  # the head last checkpointed
        self._next = clock() + config.interval_s

    def began(self, before: ChainHead, first: ChainHead) -> None:
        """A file was begun after `before`, with the record that left the chain at `first`."""
        self._write({"event": "start", "seq": before.seq, "hash": before.hash, "first": first.hash})

    def due_in(self, head: ChainHead | None) -> float | None:
        """Seconds until the head is due to be checkpointed; None while it has not moved."""
        if head is None or head == self._last:
            return None
        return max(self._next - self._clock(), 0.0)

    def head(self, head: ChainHead | None, *, now: bool = False) -> None:
        """Checkpoint the head if it moved and is due (or `now`: the writer is stopping)."""
        wait = self.due_in(head)
        if head is None or wait is None or (wait > 0 and not now):
            return
        if self._write({"event": "head", "seq": head.seq, "hash": head.hash}):
            self._last = head
        self._next = self._clock() + self._interval_s

    def _write(self, fields: dict[str, Any]) -> bool:
        fields["time"] = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        line = canonical({**fields, "mac": _mac(self._key, fields)}) + b"\n"
        try:
            with open(self._path, "ab") as file:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:  # logged and tried again at the next interval: records keep being written
            log.error("audit_checkpoint_failed", path=str(self._path), error=str(exc))
            return False
        return True


# Verify's side ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mark:
    line: int
    event: str
    seq: int
    hash: str
    first: str | None


def check_checkpoints(report: VerifyReport, paths: Sequence[Path], checkpoints: Path, key: bytes | None) -> str | None:
    """The first way the (intact) chain `report` read from `paths` contradicts the checkpoints."""
    marks, problem = _read(checkpoints, key)
    if problem is not None:
        return problem
    if not report.records:
        last = max((m.seq for m in marks), default=0)
        return f"missing: the log is empty, but a checkpoint vouches for seq {last}" if last else None
    first_seq, last_seq = report.first_seq or 1, report.last_seq or 0
    start = _start_of(marks, first_seq - 1, report.first_prev or GENESIS, next(_records(paths))["hash"])
    if start is None:
        return (
            f"missing: the log starts at seq {first_seq}, but no checkpoint marks a file starting there "
            "(records before it were removed)"
        )
    vouched: dict[int, _Mark] = {}
    for mark in marks[marks.index(start) + 1 :]:
        if mark.event == "start" and (mark.seq == 0 or (mark.seq, mark.hash) == (last_seq, report.last_hash)):
            break  # a new chain, or the next file: the rest is not this log's
        if mark.seq > last_seq:
            missing = mark.seq - last_seq
            return f"cut: the log ends at seq {last_seq}, but a checkpoint vouches for seq {mark.seq} ({missing} record(s) missing)"
        vouched[mark.seq] = mark
    found = _hashes(paths, set(vouched))
    for seq, mark in sorted(vouched.items()):
        if seq >= first_seq and found.get(seq) != mark.hash:
            return f"rewritten: seq {seq} is not the record checkpoint line {mark.line} vouches for"
    return None


def _start_of(marks: list[_Mark], seq: int, prev: str, first: str) -> _Mark | None:
    for mark in reversed(marks):  # the newest: a file's start is checkpointed once
        if mark.event == "start" and (mark.seq, mark.hash, mark.first) == (seq, prev, first):
            return mark
    return None


def _read(path: Path, key: bytes | None) -> tuple[list[_Mark], str | None]:
    marks: list[_Mark] = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            mark = _mark(raw, key, number)
            if mark is None:
                return marks, f"tampered: checkpoint line {number} of {path} is not a checkpoint signed with the key"
            marks.append(mark)
    return marks, None


def _mark(raw: bytes, key: bytes | None, number: int) -> _Mark | None:
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(fields, dict)
        or fields.get("event") not in ("start", "head")
        or type(fields.get("seq")) is not int
    ):
        return None
    mac = fields.pop("mac", None)
    if key is not None and not (isinstance(mac, str) and hmac.compare_digest(_mac(key, fields), mac)):
        return None
    return _Mark(number, fields["event"], fields["seq"], str(fields.get("hash")), fields.get("first"))


def _hashes(paths: Sequence[Path], seqs: set[int]) -> dict[int, str]:
    """The hashes of the records at `seqs` (the chain was verified: seqs are unique and in order)."""
    return {record["seq"]: record["hash"] for record in _records(paths) if record.get("seq") in seqs}


def _records(paths: Sequence[Path]) -> Iterator[dict[str, Any]]:
    for path in paths:
        with open(path, "rb") as file:
            for raw in file:
                yield orjson.loads(raw)
