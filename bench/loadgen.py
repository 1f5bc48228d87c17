"""The benchmark's Python load client: a raw HTTP/1.1 client on uvloop, one JSON report on stdout.

Run by `bench/run.py`, pinned to its own core with `taskset`. Raw asyncio protocols (no HTTP client
library) so that timestamps are taken the moment bytes arrive (`data_received`), and the client
costs as little CPU as possible.

    loadgen.py rate    --url U --body F [--rate R] --duration S [--concurrency C] [--count N]
    loadgen.py streams --url U --body F --count N [--concurrency C] [--events-out FILE]
    loadgen.py stream-rate --url U --body F --duration S --concurrency C
    loadgen.py hold    --url U --body F --count N [--batch B]      (then waits for "close" on stdin)
    loadgen.py paired  --url U --baseline-url D --body F --count N [--stream --events-out FILE]

Latencies are measured from the moment a request was *scheduled* (open loop, `rate` with `--rate`):
a slow server cannot hide queueing behind a slowed-down client (no coordinated omission).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvloop

now_ns = time.monotonic_ns


@dataclass
class Response:
    status: int = 0
    sent_ns: int = 0
    headers_ns: int = 0
    first_body_ns: int = 0
    done_ns: int = 0
    body_bytes: int = 0
    events: list[int] = field(default_factory=list)  # monotonic ns at which each SSE event completed
    keep_alive: bool = True
    error: str | None = None


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, record_events: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.record_events = record_events
        self.closed = False
        self._waiter: asyncio.Future[Response] | None = None
        self._first: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._buf = b""
        self._resp: Response | None = None
        self._in_headers = True
        self._length: int | None = None
        self._chunked = False
        self._chunk_left = 0  # bytes of the current chunk still to read
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._tail = b""  # SSE: bytes after the last complete event (only the last 1 byte matters)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._resp is not None and not self._in_headers and self._length is None and not self._chunked:
                self._finish(now_ns())  # read-until-close body
            else:
                self._waiter.set_exception(ConnectionError(str(exc) if exc else "connection closed"))
        if self._first is not None and not self._first.done():
            self._first.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        t = now_ns()
        resp = self._resp
        if resp is None:
            return
        if self._in_headers:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._buf[:end].decode("latin-1"), self._buf[end + 4 :]
            self._buf = b""
            self._in_headers = False
            resp.headers_ns = t
            lines = head.split("\r\n")
            resp.status = int(lines[0].split(" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    self._length = int(value)
                elif name == "transfer-encoding" and "chunked" in value.lower():
                    self._chunked = True
                elif name == "connection" and value.lower() == "close":
                    resp.keep_alive = False
            if not self._chunked and self._length is None and resp.status in (204, 304):
                self._length = 0
            if self._length == 0:
                self._finish(t)
                return
            if not data:
                return
        if self._chunked:
            self._feed_chunked(data, t)
        else:
            self._body(data, t)
            if self._length is not None and resp.body_bytes >= self._length:
                self._finish(t)

    # body handling
    def _body(self, data: bytes, t: int) -> None:
        resp = self._resp
        assert resp is not None
        if not data:
            return
        if resp.first_body_ns == 0:
            resp.first_body_ns = t
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        resp.body_bytes += len(data)
        if self.record_events:
            joined = self._tail + data
            count = joined.count(b"\n\n")
            resp.events.extend([t] * count)
            self._tail = joined[-1:]

    def _feed_chunked(self, data: bytes, t: int) -> None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos = 0
        n = len(buf)
        while pos < n:
            state = self._chunk_state
            if state == "size":
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self._buf = buf[pos:]
                    return
                size = int(buf[pos:end].split(b";", 1)[0], 16)
                pos = end + 2
                if size == 0:
                    self._chunk_state = "trailer"
                else:
                    self._chunk_left = size
                    self._chunk_state = "data"
            elif state == "data":
                take = min(self._chunk_left, n - pos)
                self._body(buf[pos : pos + take], t)
                pos += take
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_state = "crlf"
            elif state == "crlf":
                if n - pos < 2:
                    self._buf = buf[pos:]
                    return
                pos += 2
                self._chunk_state = "size"
            else:  # trailer: ends with an empty line
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self._buf = buf[pos:]
                    return
                line = buf[pos:end]
                pos = end + 2
                if not line:
                    self._finish(t)
                    return

    def _finish(self, t: int) -> None:
        resp = self._resp
        assert resp is not None
        resp.done_ns = t
        waiter = self._waiter
        self._waiter = None
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    # API
    def send(self, request: bytes, sent_ns: int | None = None, want_first: bool = False) -> asyncio.Future[Response]:
        assert self.transport is not None and self._waiter is None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._first = loop.create_future() if want_first else None
        self._resp = Response(sent_ns=sent_ns or now_ns())
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Target:
    def __init__(self, url: str, body: bytes, headers: list[str]) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.body = body
        self.head_lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json"]
        self.head_lines += headers
        self.request = self.build()

    def build(self, extra: list[str] | None = None) -> bytes:
        lines = [*self.head_lines, *(extra or []), f"Content-Length: {len(self.body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    async def connect(self, record_events: bool = False) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Conn(record_events), self.host, self.port)
        return conn


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def summary_us(values_ns: list[int]) -> dict[str, float | int | None]:
    us = [v / 1000 for v in values_ns]
    return {
        "n": len(us),
        "mean": sum(us) / len(us) if us else None,
        "p50": pct(us, 50),
        "p90": pct(us, 90),
        "p99": pct(us, 99),
        "p999": pct(us, 99.9),
        "max": max(us) if us else None,
    }


# --- workloads ------------------------------------------------------------------------------------


async def run_rate(args: argparse.Namespace, target: Target) -> dict:
    """Open loop at --rate (or closed loop with --concurrency workers if --rate is 0), bounded by
    --duration and --count."""
    idle: list[Conn] = []
    statuses: Counter[str] = Counter()
    latencies: list[int] = []
    open_conns = 0
    max_conns = args.concurrency
    deadline = now_ns() + int(args.duration * 1e9)
    sem = asyncio.Semaphore(max_conns)
    in_window = [0]  # 2xx answers completed before the deadline

    async def one(scheduled: int) -> None:
        nonlocal open_conns
        async with sem:
            conn = idle.pop() if idle else None
            try:
                if conn is None or conn.closed:
                    conn = await target.connect()
                    open_conns += 1
                resp = await conn.send(target.request)
            except (OSError, ConnectionError) as exc:
                statuses[f"error:{type(exc).__name__}"] += 1
                return
            statuses[str(resp.status)] += 1
            latencies.append(resp.done_ns - scheduled)
            if resp.done_ns <= deadline and 200 <= resp.status < 300:
                in_window[0] += 1
            if resp.keep_alive and not conn.closed:
                idle.append(conn)
            else:
                conn.close()

    started = now_ns()
    sent = 0
    tasks: set[asyncio.Task] = set()
    if args.rate > 0:
        interval = 1e9 / args.rate
        while now_ns() < deadline and (not args.count or sent < args.count):
            due = int((now_ns() - started) / interval) + 1
            while sent < due and (not args.count or sent < args.count):
                task = asyncio.create_task(one(started + int(sent * interval)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.0005)
    else:
        counter = iter(range(args.count or 1 << 62))

        async def worker() -> None:
            nonlocal sent
            for _ in counter:
                if now_ns() >= deadline:
                    return
                sent += 1
                await one(now_ns())

        await asyncio.gather(*(worker() for _ in range(max_conns)))
    elapsed = (now_ns() - started) / 1e9
    unfinished = 0
    if tasks:
        # In flight or still queued for a connection when time was up: a few seconds to finish,
        # then they are abandoned (and counted), so an overloaded target cannot stretch the run.
        _, pending = await asyncio.wait(tasks, timeout=args.drain)
        unfinished = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for conn in idle:
        conn.close()
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return {
        "workload": "rate",
        "rate_target": args.rate,
        "concurrency": max_conns,
        "sent": sent,
        "completed": sum(v for k, v in statuses.items() if not k.startswith("error")),
        "ok": ok,
        "statuses": dict(statuses),
        "elapsed_s": elapsed,
        "achieved_rps": in_window[0] / elapsed if elapsed else 0,
        "connections_opened": open_conns,
        "unfinished": unfinished,
        "latency_us": summary_us(latencies),
    }


async def run_streams(args: argparse.Namespace, target: Target) -> dict:
    """--count streams, --concurrency at a time; TTFB and each event's arrival time."""
    statuses: Counter[str] = Counter()
    ttfb: list[int] = []
    headers_lat: list[int] = []
    durations: list[int] = []
    event_counts: list[int] = []
    receipts: list[str] = []
    counter = iter(range(args.count))
    deadline = now_ns() + int(args.duration * 1e9)

    async def worker(wid: int) -> None:
        conn: Conn | None = None
        for i in counter:
            if now_ns() >= deadline:
                return
            sid = f"{args.stream_prefix}-{i}"
            request = target.build([f"X-Bench-Stream: {sid}"])
            try:
                if conn is None or conn.closed:
                    conn = await target.connect(record_events=True)
                resp = await conn.send(request)
            except (OSError, ConnectionError) as exc:
                statuses[f"error:{type(exc).__name__}"] += 1
                conn = None
                continue
            statuses[str(resp.status)] += 1
            if resp.status != 200:
                continue
            headers_lat.append(resp.headers_ns - resp.sent_ns)
            ttfb.append(resp.first_body_ns - resp.sent_ns)
            durations.append(resp.done_ns - resp.sent_ns)
            event_counts.append(len(resp.events))
            if args.events_out:
                receipts.append(f"{sid} {resp.sent_ns} {' '.join(map(str, resp.events))}\n")
            if not resp.keep_alive:
                conn.close()
                conn = None
            if args.pause:
                await asyncio.sleep(args.pause)
        if conn is not None:
            conn.close()

    started = now_ns()
    await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
    elapsed = (now_ns() - started) / 1e9
    if args.events_out:
        Path(args.events_out).write_text("".join(receipts))
    return {
        "workload": "streams",
        "concurrency": args.concurrency,
        "statuses": dict(statuses),
        "streams": len(ttfb),
        "events": sum(event_counts),
        "events_per_stream": (sum(event_counts) / len(event_counts)) if event_counts else None,
        "elapsed_s": elapsed,
        "streams_per_s": len(ttfb) / elapsed if elapsed else 0,
        "events_per_s": sum(event_counts) / elapsed if elapsed else 0,
        "headers_us": summary_us(headers_lat),
        "ttfb_us": summary_us(ttfb),
        "duration_us": summary_us(durations),
    }


async def run_hold(args: argparse.Namespace, target: Target) -> dict:
    """Open --count streams (--batch at a time), each until its first body byte; report, wait for
    'close' on stdin (or --hold-max seconds), then close them all."""
    conns: list[Conn] = []
    failures: Counter[str] = Counter()
    started = now_ns()
    deadline = started + int(args.duration * 1e9)
    sem = asyncio.Semaphore(args.batch)

    async def open_one(i: int) -> None:
        async with sem:
            if now_ns() >= deadline:
                failures["not_attempted_time_limit"] += 1
                return
            try:
                conn = await target.connect()
                done = conn.send(target.build([f"X-Bench-Stream: hold-{i}"]), want_first=True)
                done.add_done_callback(lambda f: f.cancelled() or f.exception())
                first = conn._first
                assert first is not None
                await asyncio.wait_for(first, timeout=max(1.0, (deadline - now_ns()) / 1e9))
                conns.append(conn)
            except (TimeoutError, OSError, ConnectionError) as exc:
                failures[type(exc).__name__] += 1

    await asyncio.gather(*(open_one(i) for i in range(args.count)))
    opened_s = (now_ns() - started) / 1e9
    alive = sum(1 for c in conns if not c.closed)
    print(json.dumps({"ready": True, "open": alive, "failures": dict(failures), "open_s": opened_s}), flush=True)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), timeout=args.hold_max)
    except TimeoutError:
        pass
    still = sum(1 for c in conns if not c.closed)
    for conn in conns:
        conn.close()
    await asyncio.sleep(0.2)
    return {
        "workload": "hold",
        "requested": args.count,
        "opened": len(conns),
        "open_at_ready": alive,
        "open_at_close": still,
        "failures": dict(failures),
        "open_s": opened_s,
    }


async def run_paired(args: argparse.Namespace, target: Target, baseline: Target) -> dict:
    """Serial requests alternating between the baseline (direct) and the target, so both see the same
    machine at the same moments: what the target adds is the difference of two samples taken
    side by side, and slow drifts of background load cancel out."""
    sides = {"target": target, "baseline": baseline}
    conns: dict[str, Conn | None] = {"target": None, "baseline": None}
    stats = {side: {"statuses": Counter(), "latency": [], "ttfb": [], "events": 0} for side in sides}
    receipts: list[str] = []
    deadline = now_ns() + int(args.duration * 1e9)
    order = ("baseline", "target")
    for i in range(args.count):
        if now_ns() >= deadline:
            break
        for side in order if i % 2 == 0 else order[::-1]:
            tgt, st = sides[side], stats[side]
            sid = f"{args.stream_prefix}-{side[0]}-{i}"
            request = tgt.build([f"X-Bench-Stream: {sid}"]) if args.stream else tgt.request
            try:
                conn = conns[side]
                if conn is None or conn.closed:
                    conn = conns[side] = await tgt.connect(record_events=args.stream)
                resp = await conn.send(request)
            except (OSError, ConnectionError) as exc:
                st["statuses"][f"error:{type(exc).__name__}"] += 1
                conns[side] = None
                continue
            st["statuses"][str(resp.status)] += 1
            if not resp.keep_alive:
                conn.close()
                conns[side] = None
            if resp.status != 200:
                continue
            st["latency"].append(resp.done_ns - resp.sent_ns)
            if resp.first_body_ns:
                st["ttfb"].append(resp.first_body_ns - resp.sent_ns)
            st["events"] += len(resp.events)
            if args.events_out and args.stream:
                receipts.append(f"{sid} {resp.sent_ns} {' '.join(map(str, resp.events))}\n")
            if args.pause:
                await asyncio.sleep(args.pause)
    for conn in conns.values():
        if conn is not None:
            conn.close()
    if args.events_out:
        Path(args.events_out).write_text("".join(receipts))
    return {
        "workload": "paired",
        "stream": args.stream,
        **{
            side: {
                "statuses": dict(st["statuses"]),
                "latency_us": summary_us(st["latency"]),
                "ttfb_us": summary_us(st["ttfb"]),
                "events": st["events"],
            }
            for side, st in stats.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["rate", "streams", "stream-rate", "hold", "paired"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True, type=Path, help="file with the JSON body")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--baseline-url", help="paired: the baseline (direct) URL")
    parser.add_argument("--baseline-header", action="append", default=[], help="paired: headers for the baseline")
    parser.add_argument("--stream", action="store_true", help="paired: the body asks for a stream; record events")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s, open loop (0: closed loop)")
    parser.add_argument("--duration", type=float, default=10.0, help="upper bound, seconds")
    parser.add_argument("--count", type=int, default=0, help="upper bound on requests/streams (0: none)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--drain", type=float, default=5.0, help="rate: seconds in-flight requests may finish")
    parser.add_argument("--batch", type=int, default=200, help="hold: streams being opened at once")
    parser.add_argument("--hold-max", type=float, default=120.0, help="hold: longest wait for 'close'")
    parser.add_argument("--pause", type=float, default=0.0, help="streams: seconds between streams of a worker")
    parser.add_argument("--stream-prefix", default="s")
    parser.add_argument("--events-out", help="streams: write '<id> <sent_ns> <event ns>...' lines here")
    args = parser.parse_args()
    target = Target(args.url, args.body.read_bytes(), args.header)
    if args.workload == "paired":
        coro = run_paired(args, target, Target(args.baseline_url, args.body.read_bytes(), args.baseline_header))
    elif args.workload == "rate":
        coro = run_rate(args, target)
    elif args.workload == "hold":
        coro = run_hold(args, target)
    else:
        if args.workload == "stream-rate" and not args.count:
            args.count = 1 << 62
        coro = run_streams(args, target)
    result = uvloop.run(coro)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
