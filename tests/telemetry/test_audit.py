"""The audit log: both records per run, content modes, the hash chain, verify, rotation, backpressure, failures."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from gateway.cli.main import main as cli_main
from gateway.config.audit import AuditConfig
from gateway.domain import RunRecord, Usage
from gateway.telemetry.audit import AuditLog
from gateway.telemetry.audit.chain import (
    GENESIS,
    ChainHead,
    FileSink,
    StdoutSink,
    record_hash,
    rotated_files,
    verify,
    verify_chain,
)

DECISION_FIELDS = {
    "v", "kind", "time", "seq", "prev", "hash", "dropped", "request_id", "trace_id", "tenant", "key_fingerprint",
    "client_address", "route", "assistant_id", "requested_model", "tools", "caps", "policy", "decision",
    "violations", "shadowed", "modified",
}  # fmt: skip
OUTCOME_FIELDS = {
    "v", "kind", "time", "seq", "prev", "hash", "dropped", "request_id", "trace_id", "tenant", "thread_id", "run_id",
    "model", "upstream_model", "status", "usage", "cost_usd", "upstream_status", "streamed", "duration_s", "ttfb_s", "first_delta_s", "broken",
    "client_gone", "error_type", "error",
}  # fmt: skip
SECRET_TEXTS = ("Be terse, agent.", "my card is 4111", "second part", "tool says 42")
CREATE_AND_RUN = {
    "assistant_id": "asst_1",
    "instructions": "Be terse, agent.",
    "thread": {
        "messages": [
            {"role": "user", "content": "my card is 4111"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}},
                    {"type": "text", "text": "second part"},
                ],
            },
        ]
    },
}


def run(n: int = 1, body: dict[str, Any] | None = None, **fields: Any) -> RunRecord:
    record = RunRecord(
        f"req_{n}", "create_thread_and_run", "acme", 0.0, 1_700_000_000_000_000_000,
        key_fingerprint="fp_0123", client_address="10.0.0.7", trace_id=f"trace{n:028d}", requested_model="gpt-4o",
        tools=("file_search", "function"), max_prompt_tokens=2000, max_completion_tokens=500, policy="strict",
        decision="modify", shadowed=("models.deny",), modified=("max_completion_tokens",), assistant_id="asst_1",
        body=CREATE_AND_RUN if body is None else body,
    )  # fmt: skip
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def finish(record: RunRecord) -> RunRecord:
    record.thread_id, record.run_id, record.model, record.status = "thread_1", "run_1", "gpt-4o-2024", "completed"
    record.usage = Usage(120, 30, 150)
    record.upstream_status, record.streamed = 200, True
    record.duration_s, record.ttfb_s, record.first_delta_s = 1.23456789, 0.1, 0.25
    return record


def file_config(path: Path, **fields: Any) -> AuditConfig:
    return AuditConfig(sink="file", path=str(path), **fields)


async def audited_runs(audit: AuditLog, count: int, start: int = 1) -> None:
    for n in range(start, start + count):
        record = run(n)
        await audit.room.acquire()
        audit.run_decided(record)
        audit.run_finished(finish(record))


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


class Counts:
    def __init__(self) -> None:
        self.written = self.failed = 0

    def on_written(self, count: int) -> None:
        self.written += count

    def on_failed(self, count: int) -> None:
        self.failed += count


# Records.


async def test_each_run_writes_a_decision_and_an_outcome_with_the_documented_fields(tmp_path: Path) -> None:
    path, counts = tmp_path / "audit.jsonl", Counts()
    async with AuditLog(file_config(path), on_written=counts.on_written, on_failed=counts.on_failed) as audit:
        await audited_runs(audit, 2)
        denied = run(3, decision="deny", violations=("tools.allow",), error_type="policy_violation", error="denied")
        await audit.room.acquire()
        audit.run_decided(denied)
        audit.run_finished(denied)

    records = lines(path)
    assert [r["kind"] for r in records] == ["decision", "outcome"] * 3
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert (counts.written, counts.failed) == (6, 0)
    decision, outcome = records[0], records[1]
    assert set(decision) == DECISION_FIELDS
    assert set(outcome) == OUTCOME_FIELDS
    assert decision["time"].endswith("Z") and decision["time"][:2] == "20"
    assert {k: decision[k] for k in ("request_id", "tenant", "key_fingerprint", "client_address", "route")} == {
        "request_id": "req_1", "tenant": "acme", "key_fingerprint": "fp_0123", "client_address": "10.0.0.7",
        "route": "create_thread_and_run",
    }  # fmt: skip
    assert decision["tools"] == ["file_search", "function"]
    assert decision["caps"] == {"max_prompt_tokens": 2000, "max_completion_tokens": 500}
    assert (decision["policy"], decision["decision"]) == ("strict", "modify")
    assert (decision["shadowed"], decision["modified"]) == (["models.deny"], ["max_completion_tokens"])
    assert (decision["prev"], decision["dropped"], decision["v"]) == (GENESIS, 0, 1)
    assert outcome["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert (outcome["thread_id"], outcome["run_id"], outcome["status"]) == ("thread_1", "run_1", "completed")
    assert (outcome["duration_s"], outcome["ttfb_s"], outcome["first_delta_s"]) == (1.234568, 0.1, 0.25)
    assert (outcome["upstream_status"], outcome["broken"], outcome["client_gone"]) == (200, False, False)
    assert outcome["prev"] == decision["hash"]
    assert records[4]["violations"] == ["tools.allow"] and records[4]["decision"] == "deny"
    assert (records[5]["error_type"], records[5]["status"], records[5]["usage"]) == ("policy_violation", None, None)


@pytest.mark.parametrize("mode", ["none", "hash", "full"])
async def test_content_is_left_out_hashed_or_kept(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "audit.jsonl"
    tool_outputs = {"tool_outputs": [{"tool_call_id": "call_1", "output": "tool says 42"}]}
    async with AuditLog(file_config(path, content=mode)) as audit:
        for record in (run(1), run(2, body=tool_outputs, route="submit_tool_outputs")):
            await audit.room.acquire()
            audit.run_decided(record)
            audit.run_finished(finish(record))

    raw = path.read_text()
    decisions = [r for r in lines(path) if r["kind"] == "decision"]
    if mode == "none":
        assert all(text not in raw for text in SECRET_TEXTS)
        assert "content" not in decisions[0] and "example.com" not in raw
        return
    sha = {text: "sha256:" + hashlib.sha256(text.encode()).hexdigest() for text in SECRET_TEXTS}
    shown = (lambda text: text) if mode == "full" else sha.__getitem__
    assert decisions[0]["content"] == {
        "instructions": shown("Be terse, agent."),
        "messages": [
            {"role": "user", "text": [shown("my card is 4111")]},
            {"role": "user", "text": [shown("second part")]},
        ],
    }
    assert decisions[1]["content"] == {"tool_outputs": [{"tool_call_id": "call_1", "output": shown("tool says 42")}]}
    if mode == "hash":
        assert all(text not in raw for text in SECRET_TEXTS)
    assert verify(path).ok


async def test_the_stdout_sink_writes_one_chained_line_per_record() -> None:
    stream = io.BytesIO()
    async with AuditLog(AuditConfig(), sink=StdoutSink(stream)) as audit:
        await audited_runs(audit, 2)
    records = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert all(record_hash(r) == r["hash"] for r in records)
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]


# The chain and verify.


async def written_chain(tmp_path: Path, runs: int = 3) -> Path:
    path = tmp_path / "audit.jsonl"
    async with AuditLog(file_config(path)) as audit:
        await audited_runs(audit, runs)
    return path


def edit(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"".join(change(path.read_bytes().splitlines(keepends=True))))


async def test_an_untouched_chain_verifies(tmp_path: Path) -> None:
    path = await written_chain(tmp_path)
    report = verify(path)
    records = lines(path)
    assert (report.ok, report.records, report.problem, report.line) == (True, 6, None, None)
    assert (report.first_seq, report.last_seq, report.last_hash) == (1, 6, records[-1]["hash"])
    assert str(report) == f"{path}: OK: 6 record(s), seq 1..6, last hash {records[-1]['hash']}"
    unhashed = orjson.dumps({k: v for k, v in records[0].items() if k != "hash"}, option=orjson.OPT_SORT_KEYS)
    assert records[0]["hash"] == hashlib.sha256(unhashed).hexdigest()
    line = path.read_bytes().splitlines()[0]  # the same bytes, for verifiers without orjson
    assert line.replace(b'"hash":"' + records[0]["hash"].encode() + b'",', b"") == unhashed


def _tamper(lines_: list[bytes]) -> list[bytes]:
    lines_[2] = lines_[2].replace(b'"tenant":"acme"', b'"tenant":"evil"')
    return lines_


def _forge(lines_: list[bytes]) -> list[bytes]:
    record = orjson.loads(lines_[2])
    record["tenant"] = "evil"
    record["hash"] = record_hash(record)
    lines_[2] = orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
    return lines_


@pytest.mark.parametrize(
    ("change", "line", "problem"),
    [
        (_tamper, 3, "tampered: the content of seq 3 does not match its hash"),
        (lambda ls: [*ls[:2], ls[2].replace(b",", b", ", 1), *ls[3:]], 3, "tampered: seq 3 is not in canonical form"),
        (lambda ls: ls[:2] + ls[3:], 3, "missing: seq jumps from 2 to 4 (1 record(s) missing)"),
        (lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]], 3, "reordered: seq 4 comes before seq 3"),
        (lambda ls: [*ls[:4], ls[1], *ls[4:]], 5, "reordered: seq 2 comes after seq 4"),
        (lambda ls: [*ls[:3], b"not json\n", *ls[3:]], 4, "not JSON"),
        (lambda ls: [*ls[:-1], ls[-1][:40]], 6, "not JSON: cut-off line"),
        (_forge, 4, "missing: seq 4 does not chain to seq 3"),
        (lambda ls: ls[1:], 1, None),  # a head cut alone is only seen against the file before (or seq 1)
    ],
    ids=["edited", "reformatted", "deleted", "swapped", "moved back", "inserted", "cut", "forged", "head cut"],
)
async def test_verify_reports_the_first_problem_and_its_line(
    tmp_path: Path, change: Callable[[list[bytes]], list[bytes]], line: int, problem: str | None
) -> None:
    path = await written_chain(tmp_path)
    edit(path, change)
    report = verify(path)
    if problem is None:
        assert report.ok and report.first_seq == 2
        assert not verify(path, anchor=ChainHead()).ok  # anchored at genesis, seq 1 is missing
        return
    assert not report.ok and report.line == line
    assert report.problem is not None and report.problem.startswith(problem)
    assert report.records == line - 1
    assert str(report) == f"{path}: line {line}: {report.problem} ({line - 1} record(s) sound before it)"


# Rotation and restarts.


async def test_rotation_keeps_each_file_verifiable_alone_and_the_chain_continuous(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with AuditLog(file_config(path, max_bytes=2500, backups=50)) as audit:
        await audited_runs(audit, 10)

    files = rotated_files(path)
    assert len(files) >= 4 and files[-1] == path and files[0].name.endswith(f".{len(files) - 1}")
    total = 0
    for older, newer in zip(files, files[1:], strict=False):
        assert older.stat().st_size <= 2500
        report = verify(newer)
        assert report.ok, report
        last, first = lines(older)[-1], lines(newer)[0]
        assert (first["seq"], first["prev"]) == (last["seq"] + 1, last["hash"])
    for file in files:
        total += verify(file).records
    whole = verify_chain(files)
    assert (whole.ok, whole.records, whole.first_seq, whole.last_seq, total) == (True, 20, 1, 20, 20)

    files[1].unlink()  # a whole rotated file gone: every file still verifies alone, the chain does not
    assert all(verify(file).ok for file in files if file.exists())
    broken = verify_chain([file for file in files if file.exists()])
    assert not broken.ok and broken.problem is not None and broken.problem.startswith("missing: seq jumps")


async def test_a_restart_continues_the_chain_of_the_file(tmp_path: Path) -> None:
    path = await written_chain(tmp_path, runs=1)
    async with AuditLog(file_config(path)) as audit:
        await audited_runs(audit, 1, start=2)
    assert [r["seq"] for r in lines(path)] == [1, 2, 3, 4]
    assert verify(path).ok


async def test_a_cut_off_file_is_set_aside_and_a_new_chain_starts(tmp_path: Path) -> None:
    path = await written_chain(tmp_path, runs=1)
    with open(path, "ab") as file:
        file.write(b'{"seq":3,"prev":"')  # a crash mid-write
    with capture_logs() as logs:
        async with AuditLog(file_config(path)) as audit:
            await audited_runs(audit, 1, start=2)
    aside = path.with_name("audit.jsonl.1")
    assert verify(aside).problem == "not JSON: cut-off line"
    assert [r["seq"] for r in lines(path)] == [1, 2] and verify(path).ok
    assert any(entry["event"] == "audit_chain_restarted" for entry in logs)


# Backpressure, failures, shutdown.


class GatedSink:
    """A sink that blocks every write until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lines: list[bytes] = []

    def resume(self) -> ChainHead:
        return ChainHead()

    def write(self, line: bytes) -> None:
        if not self.gate.wait(timeout=5):
            raise TimeoutError("the test never opened the gate")
        self.lines.append(line)

    def sync(self) -> None:
        return None

    def close(self) -> None:
        self.gate.set()


async def test_admission_waits_while_the_queue_is_full_and_nothing_is_dropped(tmp_path: Path) -> None:
    sink, counts = GatedSink(), Counts()
    audit = AuditLog(AuditConfig(queue_size=4), sink=sink, on_written=counts.on_written)  # room for 2 run calls
    await audit.start()
    first, second, third, fourth = run(1), run(2), run(3), run(4)
    await audit.room.acquire()
    audit.run_decided(first)  # the writer takes it and blocks on the sink
    await until(lambda: not audit._queue)
    await audit.room.acquire()  # one permit for `first`, one for `second`: full
    waiting = asyncio.ensure_future(audit.room.acquire())
    cancelled = asyncio.ensure_future(audit.room.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done() and not cancelled.done()
    cancelled.cancel()  # a caller that gives up while waiting takes no room with it
    audit.run_finished(finish(first))  # relays in flight never wait
    audit.run_decided(second)
    audit.run_finished(finish(second))
    extra = run(9)
    audit.run_decided(extra)  # even without a permit, a hook never blocks or drops
    audit.run_finished(finish(extra))
    assert not waiting.done()

    sink.gate.set()
    await asyncio.wait_for(waiting, 2)
    audit.run_decided(third)
    audit.run_finished(finish(third))
    await audit.stop()

    written = [orjson.loads(line) for line in sink.lines]
    assert len(written) == counts.written == 8
    assert [r["seq"] for r in written] == list(range(1, 9))
    assert sorted(r["request_id"] for r in written) == sorted(["req_1", "req_2", "req_3", "req_9"] * 2)
    assert fourth.request_id not in {r["request_id"] for r in written}


async def test_an_outcome_without_a_decision_gives_the_room_back() -> None:
    async with AuditLog(AuditConfig(queue_size=2), sink=StdoutSink(io.BytesIO())) as audit:
        for n in range(3):  # room for one run call: the call failed before its policy stage, only the outcome comes
            record = run(n)
            await asyncio.wait_for(audit.room.acquire(), 1)
            audit.run_finished(record)
        await until(lambda: not audit.room.locked())


class _HalfWriter:
    """A file on a disk that fills up half-way through the next write."""

    def __init__(self, file: Any) -> None:
        self.file = file

    def tell(self) -> int:
        return int(self.file.tell())

    def write(self, data: bytes) -> None:
        self.file.write(data[: len(data) // 2])
        self.file.flush()
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        self.file.close()


class _DiskFullOnce(FileSink):
    def __init__(self, path: Path) -> None:
        super().__init__(path, max_bytes=0, backups=1)
        self.opened = 0

    def _open(self) -> Any:
        self.opened += 1
        file = super()._open()
        return _HalfWriter(file) if self.opened == 2 else file


async def test_a_half_written_record_is_cut_and_its_loss_noted_in_the_chain(tmp_path: Path) -> None:
    path, counts = tmp_path / "audit.jsonl", Counts()
    async with AuditLog(file_config(path), sink=_DiskFullOnce(path), on_failed=counts.on_failed) as audit:
        await audited_runs(audit, 2)
    assert counts.failed == 1
    assert [(r["seq"], r["dropped"]) for r in lines(path)] == [(1, 0), (2, 1), (3, 0)]
    assert verify(path).ok and verify(path).dropped == 1
    assert cli_main(["audit", "verify", str(path)]) == 3  # intact, but not everything accepted was written


async def test_a_failing_sink_is_reported_and_the_log_keeps_going(tmp_path: Path) -> None:
    path, counts = tmp_path / "missing" / "audit.jsonl", Counts()
    audit = AuditLog(file_config(path), on_written=counts.on_written, on_failed=counts.on_failed)
    with capture_logs() as logs:
        async with audit:
            await audited_runs(audit, 2)  # hooks never raise, whatever the sink does
            await until(lambda: counts.failed == 4)
            path.parent.mkdir()  # disk space back
            await audited_runs(audit, 1, start=3)
    assert (counts.written, counts.failed) == (2, 4)
    failures = [entry for entry in logs if entry["event"] == "audit_sink_failed"]
    assert failures and failures[0]["log_level"] == "error" and "No such file" in failures[0]["error"]
    assert any(entry["event"] == "audit_sink_recovered" for entry in logs)
    records = lines(path)
    assert [(r["seq"], r["dropped"], r["request_id"]) for r in records] == [(1, 4, "req_3"), (2, 0, "req_3")]
    report = verify(path)
    assert report.ok and report.dropped == 4 and str(report).endswith("4 record(s) lost to sink failures")


async def test_a_record_that_cannot_be_built_is_counted_failed_not_raised() -> None:
    counts = Counts()
    audit = AuditLog(AuditConfig(content="hash"), sink=StdoutSink(io.BytesIO()), on_failed=counts.on_failed)
    broken = run(1)
    broken.tools = None  # type: ignore[assignment]
    with capture_logs() as logs:
        await audit.room.acquire()
        audit.run_decided(broken)
    assert counts.failed == 1 and logs[0]["event"] == "audit_record_failed"
    assert audit.room._value == audit.config.queue_size // 2 - 1  # held until the outcome is written
    audit.run_finished(finish(broken))
    await audit.start()
    await until(lambda: audit.room._value == audit.config.queue_size // 2)
    await audit.stop()


async def test_stop_writes_everything_accepted_and_refuses_what_comes_after(tmp_path: Path) -> None:
    path, counts = tmp_path / "audit.jsonl", Counts()
    audit = AuditLog(file_config(path), on_written=counts.on_written, on_failed=counts.on_failed)
    await audited_runs(audit, 300)  # queued before the writer even starts
    await audit.start()
    await audit.stop()
    assert counts.written == 600 and len(lines(path)) == 600 and verify(path).records == 600
    late = run(999)
    await asyncio.wait_for(audit.room.acquire(), 1)  # never blocks once stopped
    with capture_logs() as logs:
        audit.run_decided(late)
    assert counts.failed == 1 and logs[0]["event"] == "audit_record_after_stop"
    assert len(lines(path)) == 600


async def test_a_disabled_log_does_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    async with AuditLog(file_config(path, enabled=False, queue_size=2)) as audit:
        await audited_runs(audit, 3)
    assert not path.exists()


def test_config_needs_a_path_for_a_file_and_only_then() -> None:
    assert AuditConfig().sink == "stdout" and AuditConfig().content == "none"
    assert AuditConfig(sink="file", path="/var/log/audit.jsonl").backups == 10
    bad_configs: list[dict[str, Any]] = [
        {"sink": "file"}, {"sink": "file", "path": ""}, {"path": "/tmp/a"}, {"queue_size": 1}, {"rotate": True},
        {"content": "some"}, {"sink": "file", "path": "/tmp/a", "backups": 0},
    ]  # fmt: skip
    for bad in bad_configs:
        with pytest.raises(ValidationError):
            AuditConfig.model_validate(bad)


def _chain_lines(records: list[dict[str, Any]]) -> list[bytes]:
    head, out = ChainHead(), []
    for record in records:
        line, head = head.seal(record)
        out.append(line + b"\n")
    return out


def test_verify_anchors_a_first_seq_1_at_genesis(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    good = _chain_lines([{"kind": "decision"}, {"kind": "outcome"}])
    record = orjson.loads(good[0])
    record["prev"] = "1" * 64
    record["hash"] = record_hash(record)
    path.write_bytes(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
    assert verify(path).problem == "missing: seq 1 does not start from the genesis hash"
    path.write_bytes(b"".join(good))
    assert verify(path).ok
    path.write_bytes(b"")
    assert str(verify(path)) == f"{path}: OK: no records"
    path.write_bytes(b'{"seq": 1}\n')
    assert str(verify(path)).startswith(f"{path}: line 1: malformed: not an audit record")
