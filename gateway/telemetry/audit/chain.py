"""The audit log's hash chain and its storage: canonical form, sealing, sinks, rotation, verification.

Canonical form of a record: `orjson.dumps(record, option=orjson.OPT_SORT_KEYS)`, i.e. UTF-8 JSON
with no whitespace, object keys sorted at every level, non-ASCII characters unescaped and floats in
their shortest round-trip form. Each line of an audit file is the canonical form of one record.

    hash = sha256(canonical(record without its "hash" key)).hexdigest()

With `audit.mac_key`, records carry `"alg": "hmac-sha256"` and the hash is HMAC-SHA256 with that key
over the same bytes: without the key no one can chain records anew (drop some and re-hash the rest).

`seq` and `prev` are inside what the hash covers. The chain is one stream: `seq` counts from 1 and
`prev` is the previous record's `hash` (`GENESIS`, 64 zeros, for seq 1). Rotated files are cuts of
that stream, so a file's first record carries the previous file's last `seq` + 1 and last `hash`:
each file verifies alone (its first record is its anchor) and consecutive files join up. Since
`hash` is never the first nor the last key, the hashed bytes are also the line with its
`"hash":"<hex>",` member cut out, for verifiers written without orjson.

A file sink resumes the chain from the file's last line after a restart; if that line is not a
sound record (a write cut short by a crash), the file is rotated aside untouched and a new chain
starts at seq 1. The stdout sink starts a new chain in every process.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson
import structlog

log = structlog.get_logger("gateway.audit")

GENESIS = "0" * 64
MAC = "hmac-sha256"  # the `alg` of a keyed record; a record without `alg` is plain sha256
_TAIL_BLOCK = 64 * 1024


def canonical(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """The record's hash: sha256 of its canonical form without `hash`, or HMAC-SHA256 with `key`."""
    data = canonical({k: v for k, v in record.items() if k != "hash"})
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class ChainHead:
    """Where the chain stands: the last record written (seq 0 and GENESIS before the first)."""

    seq: int = 0
    hash: str = GENESIS

    def seal(self, entry: Mapping[str, Any], key: bytes | None = None) -> tuple[bytes, ChainHead]:
        """The record's line as the next link, and the head it leaves if written (self is unchanged)."""
        record = {**entry, "seq": self.seq + 1, "prev": self.hash, **({"alg": MAC} if key else {})}
        digest = record_hash(record, key)
        return canonical({**record, "hash": digest}), ChainHead(self.seq + 1, digest)

    @classmethod
    def after(cls, line: bytes | None, key: bytes | None = None) -> ChainHead | None:
        """The head that continues after `line` (a file's last line); None if it is not a sound record."""
        if line is None:
            return cls()
        record = _parse(line)
        if record is None or _problem(record, line, key) is not None:
            return None
        return cls(record["seq"], record["hash"])


def last_line(path: Path) -> bytes | None:
    """The file's last line with its newline; None for a missing or empty file, b"" for a cut-off tail."""
    try:
        with open(path, "rb") as file:
            end = file.seek(0, os.SEEK_END)
            if end == 0:
                return None
            tail, start = b"", end
            while start > 0 and tail.count(b"\n") < 2:
                start = max(0, start - _TAIL_BLOCK)
                file.seek(start)
                tail = file.read(end - start)
    except FileNotFoundError:
        return None
    if not tail.endswith(b"\n"):
        return b""  # a write cut short (crash, disk full): not a record to chain after
    return tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1 :]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    path: str
    ok: bool
    records: int
    problem: str | None = None
    line: int | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    dropped: int = 0  # records the writer failed to write, as noted in-chain by the records after them
    first_prev: str | None = None  # the first record's `prev`: where the file joins the chain
    keyed: bool = False  # some record carries a MAC (checked only if the key was given)

    def __str__(self) -> str:
        if not self.ok:
            return f"{self.path}: line {self.line}: {self.problem} ({self.records} record(s) sound before it)"
        if not self.records:
            return f"{self.path}: OK: no records"
        text = f"{self.path}: OK: {self.records} record(s), seq {self.first_seq}..{self.last_seq}"
        text += f", last hash {self.last_hash}"
        return text + (f"; {self.dropped} record(s) lost to sink failures" if self.dropped else "")


@dataclass(frozen=True, slots=True)
class _Link:
    line: int
    raw: bytes
    record: dict[str, Any] | None


def verify(path: Path, anchor: ChainHead | None = None, key: bytes | None = None) -> VerifyReport:
    """Check one audit file and report its first problem; `anchor` is the record expected before it.

    Without an anchor, a file starting at seq 1 must start from GENESIS; one starting later (a
    rotated file) is taken to continue whatever came before it. With `key`, every record must carry
    a MAC made with it; without, MACs are not checked (the report says the log is `keyed`).
    """
    state = _Walk(str(path), anchor, key)
    with open(path, "rb") as file:
        links = _links(file)
        current = next(links, None)
        while current is not None:
            following = next(links, None)
            problem = state.check(current, following)
            if problem is not None:
                return state.report(problem, current.line)
            current = following
    return state.report(None, None)


def verify_chain(paths: Sequence[Path], key: bytes | None = None) -> VerifyReport:
    """Check rotated files oldest first (`audit.jsonl.3`, `.2`, `.1`, `audit.jsonl`) as one chain."""
    anchor: ChainHead | None = None
    first_seq: int | None = None
    first_prev: str | None = None
    records = dropped = 0
    keyed = False
    for path in paths:
        report = verify(path, anchor, key)
        if not report.ok:
            return report
        records, dropped, keyed = records + report.records, dropped + report.dropped, keyed or report.keyed
        if report.records:
            if first_seq is None:
                first_seq, first_prev = report.first_seq, report.first_prev
            anchor = ChainHead(report.last_seq or 0, report.last_hash or GENESIS)
    return VerifyReport(
        " + ".join(str(p) for p in paths) or "(no files)", True, records, first_seq=first_seq,
        last_seq=anchor.seq if anchor else None, last_hash=anchor.hash if anchor else None, dropped=dropped,
        first_prev=first_prev, keyed=keyed,
    )  # fmt: skip


def rotated_files(path: Path) -> list[Path]:
    """The file and its rotated backups, oldest first."""
    backups = sorted(
        (p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()), key=lambda p: -int(p.suffix[1:])
    )
    return [*backups, path] if path.exists() else backups


class _Walk:
    """The chain as read so far."""

    def __init__(self, path: str, anchor: ChainHead | None, key: bytes | None) -> None:
        self.path = path
        self.anchor = anchor
        self.key = key
        self.head: ChainHead | None = None
        self.first_seq: int | None = None
        self.first_prev: str | None = None
        self.keyed = False
        self.records = 0
        self.dropped = 0

    def check(self, link: _Link, following: _Link | None) -> str | None:
        if link.record is None:
            return "not JSON: the line is not a JSON object" if link.raw.endswith(b"\n") else "not JSON: cut-off line"
        problem = _problem(link.record, link.raw, self.key) or self._link(link.record, following)
        if problem is None:
            record = link.record
            self.head = ChainHead(record["seq"], record["hash"])
            if self.first_seq is None:
                self.first_seq, self.first_prev = record["seq"], record["prev"]
            self.keyed = self.keyed or record.get("alg") == MAC
            self.records += 1
            dropped = record.get("dropped")
            self.dropped += dropped if type(dropped) is int else 0
        return problem

    def _link(self, record: Mapping[str, Any], following: _Link | None) -> str | None:
        seq, prev = record["seq"], record["prev"]
        before = self.head or self.anchor
        if before is None:
            if seq == 1 and prev != GENESIS:
                return "missing: seq 1 does not start from the genesis hash"
            return None
        if seq <= before.seq:
            return f"reordered: seq {seq} comes after seq {before.seq}"
        if seq > before.seq + 1:
            later = following.record.get("seq") if following and following.record else None
            if type(later) is int and later < seq:
                return f"reordered: seq {seq} comes before seq {later}"
            return f"missing: seq jumps from {before.seq} to {seq} ({seq - before.seq - 1} record(s) missing)"
        if prev != before.hash:
            return f"missing: seq {seq} does not chain to seq {before.seq} (prev is not its hash)"
        return None

    def report(self, problem: str | None, line: int | None) -> VerifyReport:
        head = self.head
        return VerifyReport(
            self.path, problem is None, self.records, problem, line, self.first_seq,
            head.seq if head else None, head.hash if head else None, self.dropped, self.first_prev, self.keyed,
        )  # fmt: skip


def _links(lines: Iterator[bytes]) -> Iterator[_Link]:
    for number, raw in enumerate(lines, start=1):
        yield _Link(number, raw, _parse(raw))


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _problem(record: Mapping[str, Any], raw: bytes, key: bytes | None = None) -> str | None:
    """What is wrong with one record on its own: its shape, its hash (its MAC, given the key), its bytes."""
    seq, prev, digest, alg = record.get("seq"), record.get("prev"), record.get("hash"), record.get("alg")
    if type(seq) is not int or seq < 1 or not _is_hex(prev) or not _is_hex(digest) or alg not in (None, MAC):
        return "malformed: not an audit record (needs seq >= 1, prev and hash)"
    if key is not None and alg != MAC:
        return f"tampered: seq {seq} carries no MAC (written without the key, or forged)"
    if alg == MAC and key is not None and not hmac.compare_digest(record_hash(record, key), str(digest)):
        return f"tampered: the MAC of seq {seq} does not match (forged, or not the key it was written with)"
    if alg is None and record_hash(record) != digest:
        return f"tampered: the content of seq {seq} does not match its hash"
    if raw.rstrip(b"\n") != canonical(record):
        return f"tampered: seq {seq} is not in canonical form (the line was edited)"
    return None


def _is_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# Sinks: called from the audit writer's thread only -----------------------------------------------


class AuditSink(Protocol):
    def resume(self) -> ChainHead:
        """Where the chain continues, from what the sink already holds (may set a broken file aside)."""
        ...

    def write(self, line: bytes) -> bool:
        """Write one record's line (no newline) and flush it to the OS, or raise; True if it began a file."""
        ...

    def sync(self) -> None:
        """Make the batch just written durable."""
        ...

    def close(self) -> None: ...


class StdoutSink:
    """One JSON line per record on stdout (the gateway's own logs go to stderr); a new chain per process."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream
        self._began = False

    def resume(self) -> ChainHead:
        return ChainHead()

    def write(self, line: bytes) -> bool:
        stream = self._stream or sys.stdout.buffer
        stream.write(line + b"\n")
        stream.flush()
        began, self._began = not self._began, True
        return began

    def sync(self) -> None:
        return None

    def close(self) -> None:
        return None


class FileSink:
    """A JSON-lines file, rotated by size with the stdlib's `RotatingFileHandler` rename scheme."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int, key: bytes | None = None) -> None:
        self.path = Path(path)
        self._key = key
        self._max_bytes = max_bytes
        self._rotation = RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups, delay=True)
        self._file: io.BufferedWriter | None = None

    def resume(self) -> ChainHead:
        head = ChainHead.after(last_line(self.path), self._key)
        if head is None:  # a cut-off or foreign last line: keep it as evidence, start a new chain
            log.warning("audit_chain_restarted", path=str(self.path), reason="last line is not a sound record")
            self._rotate()
            head = ChainHead()
        return head

    def write(self, line: bytes) -> bool:
        data = line + b"\n"
        file = self._open()
        size = file.tell()
        if self._max_bytes and size and size + len(data) > self._max_bytes:
            self._rotate()
            file, size = self._open(), 0
        try:
            file.write(data)
            file.flush()
        except BaseException:
            self._discard(size)
            raise
        return size == 0

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._close()
        self._rotation.close()

    def _open(self) -> io.BufferedWriter:
        if self._file is None:
            self._file = open(self.path, "ab")  # kept open across batches, closed by close()
        return self._file

    def _rotate(self) -> None:
        self._close()
        self._rotation.doRollover()  # delay=True: renames only, the next write opens the new file

    def _discard(self, size: int) -> None:
        """After a failed write, cut any half-written line so the next record starts clean."""
        self._close()
        with contextlib.suppress(OSError):
            os.truncate(self.path, size)

    def _close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
