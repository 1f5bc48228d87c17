"""The tamper-evident audit log: two hash-chained JSON lines per run call, written off the event loop.

For every run call the `run_decided` hook records who asked for what and the policy's verdict (a
`decision` record), and `run_finished` records how it ended (an `outcome` record). Hooks only build
the record and queue it; one writer task seals records into the chain (`chain.py`) in write order
and writes them in batches (what arrived within `GATHER_S`) from a worker thread: one flushed write
per record, one fsync per batch. Backpressure is the `room` semaphore: admission takes a
permit per run call and the writer gives it back once that call's outcome record is written (or
lost), so a slow sink slows new run calls down while relays already in flight never wait or drop.

A record the sink fails to write is counted `failed` and dropped (`on_failure: fail_open`); the next
record written carries how many were dropped just before it (`dropped`), so the loss shows inside the
chain, which stays verifiable. Under `fail_closed` a record the sink fails to write is held and tried
again every `RETRY_S` (nothing is lost unless the gateway stops first), and `writable` is False until
one is written: admission refuses run calls meanwhile. A file sink continues the chain of the file it
finds (the chain survives restarts). With `mac_key` the chain is keyed, and with `checkpoints` the
head is checkpointed to a second file (`anchor.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import structlog

from gateway.config.audit import AuditConfig
from gateway.config.pricing import usd
from gateway.domain import RunRecord
from gateway.telemetry.audit.anchor import Checkpoints
from gateway.telemetry.audit.chain import AuditSink, ChainHead, FileSink, StdoutSink

log = structlog.get_logger("gateway.audit")

SCHEMA_VERSION = 1
BATCH = 256  # records per trip to the writer thread
GATHER_S = 0.01  # how long the writer lets records gather before a trip (a hand-off costs more than a record)
RETRY_S = 0.5  # fail_closed: how often records held are tried again while the sink fails
ERROR_CHARS = 1000  # error messages are cut to this length
_TEXT_KEYS = frozenset({"instructions", "additional_instructions", "text", "output"})

Entry = dict[str, Any]
Report = Callable[[int], None]


# Records --------------------------------------------------------------------------------------


def decision_record(record: RunRecord, content: str) -> Entry:
    entry: Entry = {
        "v": SCHEMA_VERSION, "kind": "decision", "time": _now(),
        "request_id": record.request_id, "trace_id": record.trace_id, "tenant": record.tenant,
        "key_fingerprint": record.key_fingerprint, "client_address": record.client_address,
        "route": record.route, "assistant_id": record.assistant_id, "requested_model": record.requested_model,
        "tools": list(record.tools),
        "caps": {"max_prompt_tokens": record.max_prompt_tokens, "max_completion_tokens": record.max_completion_tokens},
        "policy": record.policy, "decision": record.decision, "violations": list(record.violations),
        "shadowed": list(record.shadowed), "modified": list(record.modified),
    }  # fmt: skip
    if content != "none":
        entry["content"] = extract_content(record.body)  # hashed by the writer, off the loop
    return entry


def outcome_record(record: RunRecord, content: str) -> Entry:
    return {
        "v": SCHEMA_VERSION, "kind": "outcome", "time": _now(),
        "request_id": record.request_id, "trace_id": record.trace_id, "tenant": record.tenant,
        "thread_id": record.thread_id, "run_id": record.run_id, "model": record.model, "upstream_model": record.upstream_model or record.model,
        "status": record.status,
        "usage": record.usage and record.usage.as_json(),
        "cost_usd": None if record.cost_micros is None else usd(record.cost_micros),
        "upstream_status": record.upstream_status, "streamed": record.streamed,
        "duration_s": _seconds(record.duration_s), "ttfb_s": _seconds(record.ttfb_s),
        "first_delta_s": _seconds(record.first_delta_s),
        "broken": record.broken, "client_gone": record.client_gone,
        "error_type": record.error_type, "error": record.error and record.error[:ERROR_CHARS],
    }  # fmt: skip


def extract_content(body: Mapping[str, Any] | None) -> Entry:
    """A run call's texts, only those present: instructions, messages' text parts, tool outputs."""
    if not isinstance(body, Mapping):
        return {}
    content: Entry = {k: body[k] for k in ("instructions", "additional_instructions") if isinstance(body.get(k), str)}
    thread = body.get("thread")
    messages = _items(thread.get("messages") if isinstance(thread, Mapping) else None)
    messages += _items(body.get("additional_messages"))
    if messages:
        content["messages"] = [{"role": m.get("role"), "text": _texts(m.get("content"))} for m in messages]
    outputs = _items(body.get("tool_outputs"))
    if outputs:
        content["tool_outputs"] = [
            {"tool_call_id": o.get("tool_call_id"), "output": o["output"] if isinstance(o.get("output"), str) else None}
            for o in outputs
        ]
    return content


def digest_texts(node: Any, key: str | None = None) -> Any:
    """The same content with every text replaced by `sha256:<hex of its UTF-8>`."""
    if isinstance(node, dict):
        return {k: digest_texts(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [digest_texts(v, key) for v in node]
    if key in _TEXT_KEYS and isinstance(node, str):
        return "sha256:" + hashlib.sha256(node.encode("utf-8", "surrogatepass")).hexdigest()
    return node


def _items(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _texts(content: object) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [p["text"] for p in _items(content) if p.get("type") == "text" and isinstance(p.get("text"), str)]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def mac_key(config: AuditConfig) -> bytes | None:
    return config.mac_key.get_secret_value().encode() if config.mac_key else None


def sink_for(config: AuditConfig) -> AuditSink:
    if config.sink == "file" and config.path:
        return FileSink(config.path, config.max_bytes, config.backups, mac_key(config))
    return StdoutSink()


# The observer ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Batch:
    written: int = 0
    failed: int = 0
    error: BaseException | None = None
    sync_error: Exception | None = None
    held: list[Entry] = field(default_factory=list)  # fail_closed: not written, to be tried again
    sink_failed: bool = False  # the sink raised (not a record that could not be sealed)


class AuditLog:
    """The audit observer. `on_written(n)` / `on_failed(n)` hear how many records each batch wrote or lost."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        on_written: Report | None = None,
        on_failed: Report | None = None,
        sink: AuditSink | None = None,
    ) -> None:
        self.config = config
        self._sink = sink or sink_for(config)
        self._on_written = on_written or _ignore
        self._on_failed = on_failed or _ignore
        self._where = config.path if config.sink == "file" else config.sink
        self._key = mac_key(config)
        self._checkpoints = Checkpoints(config.checkpoints, self._key) if config.checkpoints and self._key else None
        # app[AUDIT_ROOM]: a permit per run call whose records are not all written (admission takes one)
        self.room = asyncio.Semaphore(max(config.queue_size // 2, 1))
        self._queue: deque[Entry] = deque()
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = self._stopped = self._failing = False
        self._head: ChainHead | None = None  # writer thread only, like `_dropped`
        self._dropped = 0

    # Hooks: synchronous, on the loop; they never block, never raise, never drop what they accept.

    def run_decided(self, record: RunRecord) -> None:
        self._accept(record, decision_record, last=False)

    def run_finished(self, record: RunRecord) -> None:
        self._accept(record, outcome_record, last=True)

    def _accept(self, record: RunRecord, build: Callable[[RunRecord, str], Entry], last: bool) -> None:
        queued = False
        try:
            if not self.config.enabled:
                return
            if self._stopped:
                log.error("audit_record_after_stop", request_id=record.request_id, kind=build.__name__)
                self._report(self._on_failed, 1)
                return
            self._queue.append(build(record, self.config.content))
            queued = True
            self._wakeup.set()
        except Exception:
            log.exception("audit_record_failed", kind=build.__name__)
            self._report(self._on_failed, 1)
        finally:
            if last and not queued:
                self._give_room(1)  # the writer will never see this run's outcome: its room is free now

    def _give_room(self, outcomes: int) -> None:
        for _ in range(outcomes):
            self.room.release()

    @property
    def writable(self) -> bool:
        """False from a failed write until the next one succeeds (fail_closed refuses run calls meanwhile)."""
        return not self._failing

    # Lifecycle.

    async def start(self) -> None:
        if self.config.enabled and self._task is None and not self._stopping:
            self._task = asyncio.create_task(self._drain(), name="audit-writer")

    async def stop(self) -> None:
        """Write everything accepted, then close the sink; records arriving later are counted failed."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()
        await (self._task or self._drain())
        # Once stopped, admission never waits: whoever still wants room gets it (and its records are
        # counted failed, like any record after stop).
        self._give_room(self.config.queue_size)
        await asyncio.to_thread(self._sink.close)

    async def __aenter__(self) -> AuditLog:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # The writer.

    async def _drain(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    await self._checkpoint(now=True)
                    self._stopped = True
                    return
                self._wakeup.clear()
                await self._idle()
                continue
            if len(self._queue) < BATCH and not self._stopping:
                await asyncio.sleep(GATHER_S)  # one trip to the thread for many records, not one per record
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH))]
            try:
                result = await asyncio.to_thread(self._write, batch)
            except Exception as exc:  # a bug, not the sink: the writer must outlive it
                result = _Batch(failed=len(batch), error=exc)
            self._settle(result)
            self._queue.extendleft(reversed(result.held))  # first in line once the sink writes again
            self._give_room(_outcomes(batch) - _outcomes(result.held))  # written or counted lost
            if result.held:
                await self._pause()

    async def _idle(self) -> None:
        """Wait for records; meanwhile checkpoint the chain's head when it is due."""
        due = self._checkpoints.due_in(self._head) if self._checkpoints else None
        try:
            await asyncio.wait_for(self._wakeup.wait(), due)
        except TimeoutError:
            await self._checkpoint()

    async def _checkpoint(self, now: bool = False) -> None:
        if self._checkpoints is not None:
            await asyncio.to_thread(self._checkpoints.head, self._head, now=now)

    async def _pause(self) -> None:
        """fail_closed: wait before trying the held records again (at once if the log is stopping)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), RETRY_S)

    def _write(self, batch: list[Entry]) -> _Batch:
        """In the worker thread: seal each record onto the chain and write it; the chain moves on writes only."""
        hold = self.config.on_failure == "fail_closed" and not self._stopping
        try:
            head = self._head = self._sink.resume() if self._head is None else self._head
        except Exception as exc:  # where the chain stands is unknown: try again with the next batch
            return self._unwritten(_Batch(error=exc, sink_failed=True), batch, hold)
        result = _Batch()
        for index, entry in enumerate(batch):
            try:
                line, after = head.seal(self._finish(entry), self._key)
            except Exception as exc:  # a record that cannot be sealed never will be: lost, whatever the mode
                result.error = result.error or exc
                self._unwritten(result, [entry], hold=False)
                continue
            try:
                began = self._sink.write(line)
            except Exception as exc:
                result.error, result.sink_failed = result.error or exc, True
                if hold:
                    return self._synced(self._unwritten(result, batch[index:], hold))
                self._unwritten(result, [entry], hold)
                continue
            if began and self._checkpoints is not None:
                self._checkpoints.began(head, after)
            head, self._head, self._dropped = after, after, 0
            result.written += 1
        return self._synced(result)

    def _unwritten(self, result: _Batch, entries: list[Entry], hold: bool) -> _Batch:
        if hold:
            result.held.extend(entries)
        else:
            self._dropped += len(entries)
            result.failed += len(entries)
        return result

    def _synced(self, result: _Batch) -> _Batch:
        if result.written:
            try:
                self._sink.sync()
            except Exception as exc:
                result.sync_error = exc
            if self._checkpoints is not None:
                self._checkpoints.head(self._head)
        return result

    def _finish(self, entry: Entry) -> Entry:
        if self.config.content == "hash" and "content" in entry:
            entry = {**entry, "content": digest_texts(entry["content"])}
        return {**entry, "dropped": self._dropped}

    def _settle(self, result: _Batch) -> None:
        if result.written:
            self._report(self._on_written, result.written)
        if result.failed:
            self._report(self._on_failed, result.failed)
        if result.error is not None and (result.failed or not self._failing):  # held: logged once, not each retry
            error = f"{type(result.error).__name__}: {result.error}"
            log.error("audit_sink_failed", sink=self._where, failed=result.failed, held=len(result.held), error=error)
        if result.sink_failed:
            self._failing = True
        elif result.written and self._failing:
            self._failing = False
            log.info("audit_sink_recovered", sink=self._where)
        if result.sync_error is not None:
            log.error("audit_sync_failed", sink=self._where, error=str(result.sync_error))

    def _report(self, report: Report, count: int) -> None:
        try:
            report(count)
        except Exception:
            log.exception("audit_report_failed")


def _ignore(count: int) -> None:
    return None


def _outcomes(entries: list[Entry]) -> int:
    return sum(entry["kind"] == "outcome" for entry in entries)
