"""What the facade adds to a streamed run: per-event relay delay and time to first byte, against the
plain Assistants pass-through, on the same simulator and the same full-pipeline gateway config.

For each text delta the client receives (`thread.message.delta`), the delay is the client's arrival
time minus the time the simulator handed the matching upstream event to its socket (the k-th
`thread.message.delta` it sent, or behind the facade the k-th `response.output_text.delta`; the
simulator stamps each with CLOCK_MONOTONIC, the clock the client reads too). The simulator paces
events 1 ms apart, so each crosses the gateway on its own.

    python bench/facade_events.py [--streams 100] [--plain]

`--plain`: the facade's assistant and the run have no tools, so the simulator answers with its plain-text recording
(a few deltas) instead of the code-interpreter one (366 events, which it takes ~12 ms to personalise
before its first byte): the time to first byte then shows the facade's own share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from bench.cpu_per_call import KEYS, free_port, wait_ready  # noqa: E402
from bench.harness import configs  # noqa: E402

UPSTREAM_DELTA = {"assistants": "thread.message.delta", "responses": "response.output_text.delta"}


async def streams(url: str, body: bytes, count: int, prefix: str) -> tuple[dict[str, list[int]], list[float]]:
    """`count` streamed runs one after another: each one's delta arrival times (ns), and each TTFB (ms)."""
    headers = {"Authorization": f"Bearer {KEYS['BENCH_TENANT_KEY']}", "Content-Type": "application/json",
               "OpenAI-Beta": "assistants=v2", "X-Simulator-Event-Delay-Ms": "1"}  # fmt: skip
    arrivals: dict[str, list[int]] = {}
    ttfb: list[float] = []
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            sid = f"{prefix}-{n}"
            times: list[int] = []
            started, buffer = time.monotonic_ns(), b""
            async with session.post(url, data=body, headers={**headers, "X-Bench-Stream": sid}) as response:
                assert response.status == 200, await response.text()
                async for chunk in response.content.iter_any():
                    now = time.monotonic_ns()
                    if not buffer and not times and len(ttfb) == n:
                        ttfb.append((now - started) / 1e6)
                    buffer += chunk
                    *events, buffer = buffer.split(b"\n\n")
                    times += [now for event in events if event.startswith(b"event: thread.message.delta\n")]
            arrivals[sid] = times
    return arrivals, ttfb


def sent(stamps: Path, name: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in stamps.glob("stamps-*.txt"):
        for line in path.read_text().splitlines():
            sid, _index, ns, event = line.split()
            if event == name:
                out.setdefault(sid, []).append(int(ns))
    return out


def measure(protocol: str, count: int, plain: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stamps = tmp / "stamps"
        stamps.mkdir()
        sim_port, port = free_port(), free_port()
        env = {**os.environ, **KEYS, "PYTHONPATH": str(BENCH.parent), "OTEL_TRACES_EXPORTER": "none"}
        features = configs.ALL_FEATURES | ({"facade"} if protocol == "responses" else set())
        config = configs.gateway_config(tmp, "gateway", port, sim_port, tmp / "audit", 100_000, frozenset(features))
        if protocol == "responses" and plain:  # the platform's assistant without its code_interpreter tool
            raw = yaml.safe_load(config.read_text())
            raw["assistants"][configs.ASSISTANT_ID]["tools"] = []
            config.write_text(yaml.safe_dump(raw))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        sim = subprocess.Popen([sys.executable, str(BENCH / "sim_upstream.py"), "--port", str(sim_port), "--stamps",
                                str(stamps)], env=env, **quiet)  # fmt: skip
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)], env=env, **quiet)
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}/readyz"))
            body = configs.bodies(tmp)["stream"].read_bytes()
            if plain:  # no code_interpreter tool in the run either
                body = json.dumps({k: v for k, v in json.loads(body).items() if k != "tools"}).encode()
            url = f"http://127.0.0.1:{port}/v1/threads/runs"
            asyncio.run(streams(url, body, 10, "warm"))
            arrivals, ttfb = asyncio.run(streams(url, body, count, protocol))
            time.sleep(1.2)  # the simulator flushes its stamps every 0.5 s
        finally:
            for proc in (gateway, sim):
                proc.terminate()
                proc.wait(10)
        upstream = sent(stamps, UPSTREAM_DELTA[protocol])
        delays = sorted((got - at) / 1000 for sid, times in arrivals.items()
                        for got, at in zip(times, upstream.get(sid, ()), strict=False))  # fmt: skip
        return {"deltas": len(delays), "p50_us": delays[len(delays) // 2], "p99_us": delays[int(len(delays) * 0.99)],
                "ttfb_p50_ms": statistics.median(ttfb)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--plain", action="store_true", help="the facade's assistant without tools (plain text)")
    args = parser.parse_args()
    for protocol in ("assistants", "responses"):
        r = measure(protocol, args.streams, args.plain)
        print(f"{protocol:>10}: {r['deltas']} deltas, per-event delay p50 {r['p50_us']:.0f} µs, p99 {r['p99_us']:.0f} µs; "
              f"TTFB p50 {r['ttfb_p50_ms']:.2f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
