"""CPU time the gateway spends per run call: a figure that holds on a noisy, shared machine.

Throughput and latency swing by tens of percent from run to run when neighbours share the cores;
the CPU seconds the gateway process burns for N identical run calls swing far less. This starts
the bench's simulator (with its known assistant), an OTLP sink and the gateway with the full pipeline (the harness's config: tenant,
policy, limits, memory state, audit to a file, every span exported), sends N non-streamed and N
streamed run calls, and prints the gateway's user+system CPU per call.

    python bench/cpu_per_call.py [--repo CHECKOUT] [--calls 2000] [--rounds 3] [--protocol responses] [--concurrency 4]

`--repo` runs another checkout's gateway (say, a `git worktree` of the commit before a change)
with this harness, so two versions are compared on the same machine minutes apart. Few calls in flight
(the default, 4) leave the processes idle between calls, and waking a sleeping one costs the writer a
slow write on a VM; at `--concurrency 64` the figure is closer to the saturation phases'.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from bench.harness import configs  # noqa: E402

KEYS = {"BENCH_TENANT_KEY": "sk-bench-tenant", "BENCH_UPSTREAM_KEY": "sk-bench-upstream", "BENCH_ADMIN_KEY": "sk-admin"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never became ready")


async def calls(url: str, body: bytes, count: int, concurrency: int = 4) -> None:
    headers = {"Authorization": f"Bearer {KEYS['BENCH_TENANT_KEY']}", "Content-Type": "application/json",
               "OpenAI-Beta": "assistants=v2"}  # fmt: skip
    left = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in left:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def measure(repo: Path, count: int, protocol: str = "assistants", concurrency: int = 4) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sim_port, sink_port, port = free_port(), free_port(), free_port()
        env = {**os.environ, **KEYS, "PYTHONPATH": str(repo), "OTEL_TRACES_EXPORTER": "otlp",
               "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
               "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{sink_port}/v1/traces"}  # fmt: skip
        # The facade (protocol responses): the same calls served on the simulator's Responses API.
        features = configs.ALL_FEATURES | ({"facade"} if protocol == "responses" else set())
        config = configs.gateway_config(tmp, "gateway", port, sim_port, tmp / "audit", 100_000, frozenset(features))
        bodies = configs.bodies(tmp)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        procs = [
            subprocess.Popen([sys.executable, str(BENCH / "sim_upstream.py"), "--port", str(sim_port)], cwd=repo, env=env, **quiet),
            subprocess.Popen([sys.executable, str(BENCH / "otlp_sink.py"), "--port", str(sink_port)], cwd=repo, env=env, **quiet),
        ]
        gateway = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)], cwd=repo, env=env, **quiet)
        procs.append(gateway)
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}/readyz"))
            url = f"http://127.0.0.1:{port}/v1/threads/runs"
            result = {}
            for kind in ("run", "stream"):
                body = bodies[kind].read_bytes()
                asyncio.run(calls(url, body, 200))  # warm-up
                before, started = cpu_seconds(gateway.pid), time.perf_counter()
                asyncio.run(calls(url, body, count, concurrency))
                result[kind] = (cpu_seconds(gateway.pid) - before) / count * 1000
                result[f"{kind}_wall"] = (time.perf_counter() - started) / count * 1000
            return result
        finally:
            for proc in reversed(procs):  # the gateway first: it flushes its spans to the sink on the way out
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:  # (the simulator can be slow to stop with many background runs)
                    proc.kill()
                    proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=BENCH.parent, help="the checkout whose gateway runs")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--protocol", choices=("assistants", "responses"), default="assistants",
                        help="responses: the facade (upstream.protocol: responses) on the simulator's Responses API")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    args = parser.parse_args()
    rounds = [measure(args.repo.resolve(), args.calls, args.protocol, args.concurrency) for _ in range(args.rounds)]
    for kind in ("run", "stream"):
        cpu = [r[kind] for r in rounds]
        print(f"{kind:>6}: gateway CPU per call {statistics.median(cpu):.3f} ms (rounds: "
              f"{', '.join(f'{v:.3f}' for v in cpu)}); wall per call at {args.concurrency} in flight "
              f"{statistics.median(r[kind + '_wall'] for r in rounds):.3f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
