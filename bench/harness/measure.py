"""Running the load generators (wrk, bench/loadgen.py) and reading their results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .procs import CpuWatch, Proc, loadavg

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
LOADGEN = BENCH / "loadgen.py"
WRK_SCRIPT = BENCH / "wrk" / "post.lua"


@dataclass
class Layout:
    """Which CPUs each side gets (taskset lists); None everywhere with --no-pin."""

    target: str | None = "0"  # the proxy under test
    client: str | None = "1"  # wrk / loadgen
    upstream: str | None = "1"  # canned nginx, simulator, OTLP sink


def _pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


class Budget:
    """Waiting for quiet and re-running disturbed phases cost time; on a machine that is never quiet
    they would only multiply it. Both stop once this much extra time has been spent."""

    seconds = 360.0
    spent = 0.0


def wait_quiet(max_wait: float, threshold: float = 0.35) -> dict[str, float]:
    """Wait (bounded) until nothing else on the machine uses more than `threshold` cores."""
    watch = CpuWatch()
    started = time.monotonic()
    max_wait = min(max_wait, max(0.0, Budget.seconds - Budget.spent))
    deadline = started + max_wait
    waited = 0.0
    while True:
        watch.start()
        time.sleep(0.5)
        sample = watch.stop()
        if sample["foreign_cores"] <= threshold or time.monotonic() >= deadline:
            Budget.spent += time.monotonic() - started - 0.5
            return {"waited_s": round(waited, 1), "foreign_cores_at_start": sample["foreign_cores"]}
        waited += 0.5


class Phase:
    """Context for one measurement: CPU split (ours vs foreign) and load average, recorded."""

    def __init__(self, quiet_wait: float) -> None:
        self.quiet_wait = quiet_wait
        self.info: dict[str, object] = {}

    def __enter__(self) -> Phase:
        self.info["quiet"] = wait_quiet(self.quiet_wait) if self.quiet_wait > 0 else None
        self.info["loadavg_start"] = loadavg()
        self._watch = CpuWatch()
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.info["cpu"] = self._watch.stop()


def quietly(run: Callable[[], dict], tries: int, max_foreign: float = 0.25) -> dict:
    """Run a measurement up to `tries` times until nothing foreign used more than `max_foreign` cores
    during it; keep the least disturbed attempt (and how disturbed each attempt was)."""
    best: dict | None = None
    foreign: list[float] = []
    for attempt in range(max(1, tries)):
        if attempt and Budget.spent >= Budget.seconds:
            break
        started = time.monotonic()
        result = run()
        if attempt:
            Budget.spent += time.monotonic() - started
        f = result["phase"]["cpu"]["foreign_cores"]
        foreign.append(f)
        if best is None or f < best["phase"]["cpu"]["foreign_cores"]:
            best = result
        if f <= max_foreign:
            break
    assert best is not None
    best["attempts_foreign_cores"] = foreign
    return best


def wrk(
    url: str, body: Path, headers: list[str], conns: int, duration: float, layout: Layout, quiet_wait: float
) -> dict:
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_HEADERS": "\n".join(headers)}
    cmd = [
        *_pin(layout.client), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), url,
    ]  # fmt: skip
    with Phase(quiet_wait) as phase:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    result = json.loads(line.removeprefix("BENCHJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    non2xx = next((l for l in out.stdout.splitlines() if "Non-2xx" in l), None)
    result["non_2xx"] = int(non2xx.split(":")[1]) if non2xx else 0
    result["connections"] = conns
    result["phase"] = phase.info
    return result


def loadgen(
    workload: str, url: str, body: Path, headers: list[str], layout: Layout, quiet_wait: float, timeout: float,
    *extra: str,
) -> dict:
    cmd = [*_pin(layout.client), sys.executable, str(LOADGEN), workload, "--url", url, "--body", str(body)]
    for header in headers:
        cmd += ["--header", header]
    cmd += list(extra)
    with Phase(quiet_wait) as phase:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {workload} failed: {out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["phase"] = phase.info
    return result


def hold_start(url: str, body: Path, headers: list[str], layout: Layout, log: Path, *extra: str) -> Proc:
    """`loadgen hold`: opens streams, prints a `ready` line, waits for a line on stdin."""
    argv = [sys.executable, str(LOADGEN), "hold", "--url", url, "--body", str(body)]
    for header in headers:
        argv += ["--header", header]
    proc = Proc("loadgen-hold", [*argv, *extra], log, cpus=layout.client, cwd=REPO,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    return proc.start()


def read_line(proc: Proc, timeout: float) -> dict | None:
    """The next JSON line on a process's stdout, or None when it ends or time runs out."""
    import selectors

    assert proc.popen is not None and proc.popen.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.popen.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
            line = proc.popen.stdout.readline()
            if not line:
                return None
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        if proc.popen.poll() is not None:
            return None
    return None


# --- per-event relay delay ------------------------------------------------------------------------


def event_delays(receipts: Path, stamps_dir: Path, prefix: str) -> dict:
    """Join the client's event arrival times with the simulator's send stamps (same clock)."""
    sent: dict[tuple[str, int], int] = {}
    for path in stamps_dir.glob("stamps-*.txt"):
        for line in path.read_text().splitlines():
            sid, idx, ns, *_ = line.split()
            if sid.startswith(prefix + "-"):
                sent[(sid, int(idx))] = int(ns)
    delays: list[float] = []
    mismatched = 0
    streams = 0
    for line in receipts.read_text().splitlines():
        parts = line.split()
        if not parts[0].startswith(prefix + "-"):
            continue
        sid, events = parts[0], [int(x) for x in parts[2:]]
        streams += 1
        for idx, got in enumerate(events):
            at = sent.get((sid, idx))
            if at is None:
                mismatched += 1
                continue
            delays.append((got - at) / 1000)  # µs
    delays.sort()

    def q(p: float) -> float | None:
        return delays[min(len(delays) - 1, round(p / 100 * (len(delays) - 1)))] if delays else None

    return {
        "streams": streams,
        "events": len(delays),
        "events_without_stamp": mismatched,
        "delay_us": {"p50": q(50), "p90": q(90), "p99": q(99), "p999": q(99.9), "max": delays[-1] if delays else None,
                     "mean": sum(delays) / len(delays) if delays else None},
    }  # fmt: skip
