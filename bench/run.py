"""One command: the gateway measured against its peers, side by side, on this machine.

    python bench/run.py            # full run (about 30 minutes)
    python bench/run.py --quick    # about 4 minutes: short phases, 1,000 held streams, a 6k soak, no ablation
    python bench/run.py --setup    # first: apt-get nginx + wrk, the LiteLLM venv with py-spy

Starts everything itself (canned-run nginx, the simulator, an OTLP sink, each proxy in turn) and
stops everything it started, whatever happens. Raw numbers: bench/out/results-<time>.json (and
latest.json); the report (table, targets met / not met, profile): bench/out/report-<time>.md.
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import configs, measure, report  # noqa: E402
from harness.measure import BENCH, REPO, Layout, event_delays, hold_start, read_line  # noqa: E402
from harness.procs import Proc, boosted, free_port, http_json, http_text, memory, stop_all, wait_port  # noqa: E402
from harness.profile import analyse  # noqa: E402
from harness.targets import TARGETS, TWO_CORES, VARIANTS, Env, Keys, Running, start  # noqa: E402

VENV = BENCH / ".venv-litellm"
HOLD_REPLAY = "openai-dotnet__StreamingToolCall"  # a verbatim replay: cheap for the simulator to hold
HOLD_DELAY_MS = 300_000  # the held streams get their first event, then nothing for 5 minutes
ALL = configs.ALL_FEATURES
ABLATIONS = (
    ("full pipeline", ALL),
    ("- tracing", ALL - {"tracing"}),
    ("tracing samples 1 trace in 10", ALL | {"sampled"}),
    ("- audit log", ALL - {"audit"}),
    ("- limits", ALL - {"limits"}),
    ("- policy (and the token limits that need it)", ALL - {"policy"}),
    ("+ run_call log line (log_level: debug)", ALL | {"run_log"}),
    ("minimal: pass-through mode, none of the above", frozenset()),
)


@dataclass(frozen=True)
class Plan:
    serial_s: float = 10
    sat_s: float = 15
    sat_conns: int = 64
    rates: tuple[int, ...] = (100, 300, 1000, 2000)
    rate_s: float = 10
    stream_n: int = 150  # serial streams for TTFB and per-event delay
    stream_delay_ms: float = 1.0
    stream_rate_s: float = 10
    stream_conc: int = 16
    hold_n: int = 5000
    hold_open_s: float = 120  # longest time allowed to open the held streams
    soak_n: int = 100_000
    soak_chunks: int = 10
    soak_conc: int = 32
    max_owned: int = 10_000  # state.max_owned_objects: the designed retention fills early in the soak
    integrity_s: float = 60
    profile_s: float = 20
    ablation_serial_s: float = 4
    ablation_sat_s: float = 6
    ablation_rounds: int = 3
    quiet_wait: float = 10  # longest wait for the machine to be quiet before each phase
    tries: int = 2  # a phase disturbed by foreign load (> 0.25 cores) is run again, up to this often
    extra_budget_s: float = 360  # total time those waits and re-runs may add to the run
    paired_n: int = 3000  # serial non-streaming requests to each side, alternating direct / target
    paired_max_s: float = 120  # upper bound on a paired phase (LiteLLM is slow)
    ablations: int = 8  # how many of ABLATIONS to run (quick: full pipeline and minimal only)


FULL = Plan()
QUICK = Plan(
    serial_s=3, sat_s=4, rates=(), rate_s=3, stream_n=20, stream_rate_s=3, hold_n=1000, hold_open_s=20,
    soak_n=6_000, soak_chunks=3, max_owned=600, integrity_s=8, profile_s=5, quiet_wait=1, ablation_serial_s=3,
    ablation_sat_s=3, ablation_rounds=1, tries=1, paired_n=300, paired_max_s=20, ablations=0, extra_budget_s=20,
)  # fmt: skip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- setup ----------------------------------------------------------------------------------------


def setup() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not (shutil.which("nginx") and shutil.which("wrk")):
        log("apt-get install nginx wrk")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx", "wrk"], check=True, env=env)
    if not (VENV / "bin" / "litellm").exists() or not (VENV / "bin" / "py-spy").exists():
        log(f"LiteLLM proxy and py-spy into {VENV} (separate from the gateway's dependencies)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]", "py-spy"], check=True)


def pyspy_bin() -> Path | None:
    for candidate in (VENV / "bin" / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


# --- phases ---------------------------------------------------------------------------------------


def _all_ok(name: str, warm_up: dict) -> None:
    """A target that refuses the benchmark's calls would measure its refusals: stop before measuring."""
    statuses = warm_up.get("statuses") or {}
    if set(statuses) - {"200", 200}:
        raise RuntimeError(f"{name} answered the warm-up with {statuses}, not only 200s")


class Bench:
    def __init__(self, args: argparse.Namespace, plan: Plan) -> None:
        self.args = args
        self.plan = plan
        self.layout = Layout(None, None, None) if args.no_pin else Layout()
        self.tmp = Path(tempfile.mkdtemp(prefix="gwbench-"))
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.results: dict = {"meta": {}, "plan": asdict(plan), "targets": {}, "gateway": {}}
        self.keys = Keys()
        self.bodies = configs.bodies(self.tmp)
        self.boost = not args.no_boost
        self.stamps = self.tmp / "stamps"
        self.stamps.mkdir()

    # infrastructure
    def start_infra(self) -> None:
        logs = self.tmp / "logs"
        self.canned_port = free_port()
        conf = configs.nginx_canned(self.tmp, self.canned_port)
        self.canned = Proc("nginx-canned", ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e",
                                            str(conf.parent / "error.log")], logs / "nginx-canned.log",
                           cpus=self.layout.upstream).start()  # fmt: skip
        wait_port(self.canned_port, 20, self.canned)
        self.sim_port = free_port()
        self.sims = []
        for i in range(self.args.sim_workers):
            argv = [sys.executable, str(BENCH / "sim_upstream.py"), "--port", str(self.sim_port), "--stamps",
                    str(self.stamps)] + (["--reuse-port"] if self.args.sim_workers > 1 else [])  # fmt: skip
            self.sims.append(Proc(f"simulator-{i}", argv, logs / f"simulator-{i}.log", cpus=self.layout.upstream,
                                  env={"PYTHONPATH": str(REPO)}, cwd=REPO).start())  # fmt: skip
        wait_port(self.sim_port, 30, self.sims[0])
        time.sleep(0.5 * len(self.sims))
        self.sink_port = free_port()
        self.sink = Proc("otlp-sink", [sys.executable, str(BENCH / "otlp_sink.py"), "--port", str(self.sink_port)],
                         logs / "otlp-sink.log", cpus=self.layout.upstream, env={"PYTHONPATH": str(REPO)},
                         cwd=REPO).start()  # fmt: skip
        wait_port(self.sink_port, 30, self.sink)
        self.direct_url = f"http://127.0.0.1:{self.canned_port}/v1/threads/runs"
        self.direct_sim_url = f"http://127.0.0.1:{self.sim_port}/v1/threads/runs"
        self.direct_headers = [f"Authorization: Bearer {self.keys.direct}", "OpenAI-Beta: assistants=v2"]
        redis_url = None
        if any("redis" in VARIANTS.get(name, ()) for name in self.args.targets):
            redis_port = free_port()  # a real redis-server, on the upstream's core, no persistence
            self.redis = Proc("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                        "--appendonly", "no"], logs / "redis.log", cpus=self.layout.upstream).start()  # fmt: skip
            wait_port(redis_port, 20, self.redis)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        litellm = VENV / "bin" / "litellm"
        self.env = Env(self.tmp, logs, self.layout, self.keys, self.sink_port,
                       litellm if litellm.exists() else None, self.plan.max_owned, redis_url)  # fmt: skip

    def save(self) -> Path:
        path = self.out / f"results-{self.stamp}.json"
        text = json.dumps(self.results, indent=1, default=str)
        path.write_text(text)
        (self.out / "latest.json").write_text(text)
        return path

    def quiet(self) -> float:
        return self.plan.quiet_wait

    def layout_of(self, name: str) -> Layout:
        """The two-worker rows pin neither the server nor the load generator (see TWO_CORES)."""
        return Layout(None, None, self.layout.upstream) if name in TWO_CORES else self.layout

    # non-streaming: canned run object from nginx
    def nonstream(self, name: str) -> dict:
        p, L = self.plan, self.layout_of(name)
        running = start(name, self.env, self.canned_port, self.canned.pid, "run")
        res: dict = {}
        try:
            body, headers = self.bodies["run"], running.headers
            _all_ok(name, measure.loadgen("rate", running.url, body, headers, L, 0, 60, "--concurrency", "8",
                                          "--duration", "2"))  # fmt: skip
            log(f"  {name}: serial latency ({p.serial_s:g}s, 1 connection, wrk)")
            with boosted(self.boost):
                res["serial"] = measure.quietly(
                    lambda: measure.wrk(running.url, body, headers, 1, p.serial_s, L, self.quiet()), p.tries)
            if name != "direct":
                log(f"  {name}: paired serial latency ({p.paired_n} requests each, alternating with direct)")
                with boosted(self.boost):
                    res["paired"] = measure.quietly(lambda: measure.loadgen(
                        "paired", running.url, body, headers, L, self.quiet(), 600, "--baseline-url",
                        self.direct_url, *[a for h in self.direct_headers for a in ("--baseline-header", h)],
                        "--count", str(p.paired_n), "--duration", str(p.paired_max_s)), p.tries)  # fmt: skip
            log(f"  {name}: saturation ({p.sat_s:g}s, {p.sat_conns} connections)")
            res["saturation"] = measure.quietly(
                lambda: measure.wrk(running.url, body, headers, p.sat_conns, p.sat_s, L, self.quiet()), p.tries)
            res["rates"] = []
            for rate in p.rates:
                log(f"  {name}: fixed rate {rate}/s ({p.rate_s:g}s)")
                r = measure.loadgen("rate", running.url, body, headers, L, self.quiet(), p.rate_s + 60,
                                    "--rate", str(rate), "--duration", str(p.rate_s), "--concurrency", "512")  # fmt: skip
                res["rates"].append(r)
                if r["achieved_rps"] < 0.5 * rate:
                    log(f"  {name}: overloaded at {rate}/s (answered {r['achieved_rps']:.0f}/s); higher rates skipped")
                    break
            if running.mem_pid:
                res["memory_after"] = memory(running.mem_pid)
        finally:
            running.stop()
        return res

    # streaming: the simulator
    def stream(self, name: str) -> dict:
        p, L = self.plan, self.layout_of(name)
        sim_pid = self.sims[0].pid if len(self.sims) == 1 else None
        running = start(name, self.env, self.sim_port, sim_pid, "stream")
        res: dict = {}
        try:
            body = self.bodies["stream"]
            delay = [f"X-Simulator-Event-Delay-Ms: {p.stream_delay_ms:g}"]
            _all_ok(name, measure.loadgen("streams", running.url, body, running.headers + delay, L, 0, 60, "--count",
                                          "10", "--concurrency", "2", "--stream-prefix", f"{name}-warm"))  # fmt: skip
            receipts = self.tmp / f"receipts-{name}.txt"
            prefix = f"{name}-ev"
            if name == "direct":
                log(f"  {name}: {p.stream_n} serial streams, {p.stream_delay_ms:g} ms between events")
                with boosted(self.boost):
                    res["serial"] = measure.quietly(lambda: measure.loadgen(
                        "streams", running.url, body, running.headers + delay, L, self.quiet(), 600, "--count",
                        str(p.stream_n), "--concurrency", "1", "--events-out", str(receipts), "--stream-prefix",
                        prefix, "--duration", "300"), p.tries)  # fmt: skip
                time.sleep(1.2)  # the simulator flushes its stamps every 0.5 s
                res["events"] = event_delays(receipts, self.stamps, prefix)
            else:
                log(f"  {name}: {p.stream_n} serial streams each, alternating with direct, "
                    f"{p.stream_delay_ms:g} ms between events")  # fmt: skip
                attempt = iter(range(100))

                def paired() -> dict:
                    tag = f"{prefix}{next(attempt)}"
                    r = measure.loadgen(
                        "paired", running.url, body, running.headers + delay, L, self.quiet(), 600, "--stream",
                        "--baseline-url", self.direct_sim_url,
                        *[a for h in self.direct_headers + delay for a in ("--baseline-header", h)],
                        "--count", str(p.stream_n), "--duration", str(p.paired_max_s), "--events-out", str(receipts),
                        "--stream-prefix", tag,
                    )  # fmt: skip
                    time.sleep(1.2)  # the simulator flushes its stamps every 0.5 s
                    r["events"] = {side: event_delays(receipts, self.stamps, f"{tag}-{side[0]}")
                                   for side in ("target", "baseline")}  # fmt: skip
                    return r

                with boosted(self.boost):
                    res["paired"] = measure.quietly(paired, p.tries)
                res["serial"] = {"ttfb_us": res["paired"]["target"]["ttfb_us"], "phase": res["paired"]["phase"]}
                res["events"] = res["paired"]["events"]["target"]
            log(f"  {name}: stream throughput ({p.stream_conc} concurrent, no event delay, {p.stream_rate_s:g}s)")
            res["throughput"] = measure.quietly(lambda: measure.loadgen(
                "stream-rate", running.url, body, running.headers + ["X-Simulator-Event-Delay-Ms: 0"], L,
                self.quiet(), p.stream_rate_s + 120, "--duration", str(p.stream_rate_s), "--concurrency",
                str(p.stream_conc), "--stream-prefix", f"{name}-tp"), p.tries)  # fmt: skip
            if name != "direct":
                res["hold"] = self.hold(running)
        finally:
            running.stop()
        return res

    def hold(self, running: Running) -> dict:
        p, L = self.plan, self.layout_of(running.name)
        log(f"  {running.name}: {p.hold_n} held-open streams")
        time.sleep(1)
        before = memory(running.mem_pid) if running.mem_pid else None
        headers = running.headers + [f"X-Simulator-Replay: {HOLD_REPLAY}", f"X-Simulator-Event-Delay-Ms: {HOLD_DELAY_MS}"]
        proc = hold_start(running.url, self.bodies["stream"], headers, L, self.tmp / "logs" / f"hold-{running.name}.log",
                          "--count", str(p.hold_n), "--batch", "100", "--duration", str(p.hold_open_s),
                          "--hold-max", "120")  # fmt: skip
        try:
            ready = read_line(proc, p.hold_open_s + 60)
            time.sleep(2)
            during = memory(running.mem_pid) if running.mem_pid else None
            if proc.popen and proc.popen.stdin:
                with contextlib.suppress(BrokenPipeError):
                    proc.popen.stdin.write(b"close\n")
                    proc.popen.stdin.flush()
            final = read_line(proc, 60)
        finally:
            proc.stop(timeout=10)
        time.sleep(3)
        after = memory(running.mem_pid) if running.mem_pid else None
        opened = (ready or {}).get("open", 0)
        out = {"requested": p.hold_n, "ready": ready, "final": final, "memory_before": before,
               "memory_open": during, "memory_after_close": after}  # fmt: skip
        if before and during and opened:
            out["rss_per_stream_kib"] = (during["rss_kib"] - before["rss_kib"]) / opened
            out["pss_per_stream_kib"] = (during["pss_kib"] - before["pss_kib"]) / opened
        return out

    # gateway-only phases
    def soak(self) -> dict:
        p, L = self.plan, self.layout
        running = start("gateway", self.env, self.canned_port, None, "soak")
        try:
            body = self.bodies["run"]
            per = p.soak_n // p.soak_chunks
            checkpoints = [{"requests": 0, **memory(running.mem_pid), "t": time.time()}]
            sent = 0
            statuses: dict[str, int] = {}
            for _i in range(p.soak_chunks):
                r = measure.loadgen("rate", running.url, body, running.headers, L, 0, 900, "--count", str(per),
                                    "--concurrency", str(p.soak_conc), "--duration", "600")  # fmt: skip
                sent += r["sent"]
                for k, v in r["statuses"].items():
                    statuses[k] = statuses.get(k, 0) + v
                time.sleep(0.5)
                checkpoints.append({"requests": sent, **memory(running.mem_pid), "t": time.time(),
                                    "rps": r["achieved_rps"]})  # fmt: skip
                log(f"  soak: {sent} requests, RSS {checkpoints[-1]['rss_kib'] / 1024:.1f} MiB")
            metrics = http_text(f"{running.origin}/metrics")
        finally:
            codes = running.stop()
        return {"requests": sent, "statuses": statuses, "checkpoints": checkpoints, "exit_codes": codes,
                "audit": report.audit_counts(running.audit_dir), "metrics": report.metric_totals(metrics),
                "max_owned_objects": p.max_owned}  # fmt: skip

    def integrity(self) -> dict:
        p, L = self.plan, self.layout
        running = start("gateway", self.env, self.canned_port, None, "integrity")
        sink_before = http_json(f"http://127.0.0.1:{self.sink_port}/stats")
        try:
            log(f"  gateway: saturation for {p.integrity_s:g}s, then every record counted")
            # Closed loop: when time is up no new request is sent and every one in flight is read to
            # its end, so every answer the gateway gave is one the client counted.
            load = measure.loadgen("rate", running.url, self.bodies["run"], running.headers, L, self.quiet(),
                                   p.integrity_s + 120, "--concurrency", str(p.sat_conns), "--duration",
                                   str(p.integrity_s), "--drain", "60")  # fmt: skip
            time.sleep(1)
            metrics = http_text(f"{running.origin}/metrics")
            usage = http_json(f"{running.origin}/admin/usage?tenant={configs.TENANT}",
                              {"Authorization": f"Bearer {self.keys.admin}"})  # fmt: skip
        finally:
            codes = running.stop()  # SIGTERM: drain, then the audit writer flushes
        time.sleep(6)  # the BatchSpanProcessor's last export
        sink_after = http_json(f"http://127.0.0.1:{self.sink_port}/stats")
        verify = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--with-backups",
                                 str(running.audit_dir / "audit.jsonl")], capture_output=True, text=True,
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)  # fmt: skip
        return {
            "load": load,
            "exit_codes": codes,
            "audit": report.audit_counts(running.audit_dir),
            "audit_verify": {"exit": verify.returncode, "output": (verify.stdout + verify.stderr).strip()[-2000:]},
            "metrics": report.metric_totals(metrics),
            "usage": usage,
            "spans_exported": {k: sink_after[k] - sink_before[k] for k in sink_after},  # type: ignore[index]
            "log": report.log_levels(self.env.logs / "gateway-integrity.log"),
        }

    def ablation(self) -> dict:
        """What each part of the pipeline costs: the gateway with one part off at a time.

        Variants are measured in interleaved rounds, each in a fresh process (a gateway's throughput
        varies by about ±10 % from one process to the next): throughput is the best round (load from
        elsewhere only ever lowers it), latency percentiles the median round."""
        p, L = self.plan, self.layout
        chosen = ABLATIONS[: p.ablations] if p.ablations < len(ABLATIONS) else ABLATIONS
        rounds: dict[str, list[dict]] = {label: [] for label, _ in chosen}
        body = self.bodies["run"]
        for r in range(p.ablation_rounds):
            for i, (label, features) in enumerate(chosen):
                running = start("gateway", self.env, self.canned_port, None, f"ablation-{r}-{i}", frozenset(features))
                try:
                    measure.loadgen("rate", running.url, body, running.headers, L, 0, 60, "--concurrency", "8",
                                    "--duration", "1.5")  # fmt: skip
                    with boosted(self.boost):
                        serial = measure.wrk(running.url, body, running.headers, 1, p.ablation_serial_s, L,
                                             min(self.quiet(), 3))  # fmt: skip
                    sat = measure.wrk(running.url, body, running.headers, p.sat_conns, p.ablation_sat_s, L,
                                      min(self.quiet(), 3))  # fmt: skip
                    rounds[label].append({"serial": serial, "saturation": sat})
                    log(f"  round {r + 1}, {label}: {sat['rps']:.0f} req/s, serial p50 "
                        f"{serial['latency_us']['p50'] / 1000:.2f} ms")  # fmt: skip
                finally:
                    running.stop()
        out = []
        for label, features in chosen:
            runs = rounds[label]
            if not runs:
                continue

            def median(values: list[float]) -> float:
                values = sorted(values)
                return values[len(values) // 2]

            out.append({
                "variant": label,
                "features": sorted(features),
                "rounds": len(runs),
                "rps_best": max(x["saturation"]["rps"] for x in runs),
                "rps_all": [round(x["saturation"]["rps"]) for x in runs],
                "serial_p50_us": median([x["serial"]["latency_us"]["p50"] for x in runs]),
                "serial_p99_us": median([x["serial"]["latency_us"]["p99"] for x in runs]),
                "foreign_cores_max": max(x["saturation"]["phase"]["cpu"]["foreign_cores"] for x in runs),
                "runs": runs,
            })  # fmt: skip
        return {"variants": out}

    def profile(self) -> dict:
        pyspy = pyspy_bin()
        if pyspy is None:
            return {"error": "py-spy not installed (python bench/run.py --setup)"}
        p, L = self.plan, self.layout
        out: dict = {}
        for kind, upstream_port in (("run", self.canned_port), ("stream", self.sim_port)):
            running = start("gateway", self.env, upstream_port, None, f"profile-{kind}")
            raw = self.out / f"pyspy-{kind}-{self.stamp}.txt"
            try:
                body = self.bodies[kind]
                if kind == "run":
                    measure.loadgen("rate", running.url, body, running.headers, L, 0, 60, "--concurrency", "8",
                                    "--duration", "2")  # fmt: skip
                spy = Proc("py-spy", [str(pyspy), "record", "--pid", str(running.mem_pid), "--rate", "150",
                                      "--duration", str(int(p.profile_s)), "--format", "raw", "--threads", "--gil",
                                      "-o", str(raw)], self.tmp / "logs" / f"py-spy-{kind}.log").start()  # fmt: skip
                time.sleep(1.0)
                log(f"  gateway: py-spy during {'saturation' if kind == 'run' else 'stream throughput'} "
                    f"({p.profile_s:g}s)")  # fmt: skip
                if kind == "run":
                    load = measure.wrk(running.url, body, running.headers, p.sat_conns, p.profile_s - 2, L, 0)
                else:
                    load = measure.loadgen("stream-rate", running.url, body,
                                           running.headers + ["X-Simulator-Event-Delay-Ms: 0"], L, 0,
                                           p.profile_s + 120, "--duration", str(p.profile_s - 2),
                                           "--concurrency", str(p.stream_conc), "--stream-prefix", "prof")  # fmt: skip
                assert spy.popen is not None
                spy.popen.wait(p.profile_s + 60)
                spy.stop()
                out[kind] = {"load": load, "raw": str(raw), **(analyse(raw) if raw.exists() else {"error": "no output"})}
            finally:
                running.stop()
        return out

    def state_memory(self) -> dict:
        """Bytes the memory state keeps per remembered object and per run call (bench/state_memory.py)."""
        calls = max(20_000, self.plan.soak_n // 5)
        out = subprocess.run([sys.executable, str(BENCH / "state_memory.py"), "--calls", str(calls)], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=600).stdout  # fmt: skip
        found = dict(re.findall(r"(\w+): (\d+) bytes per run call", out))
        per_object = re.search(r"\((\d+) per remembered object\)", out)
        return {"calls": calls, "per_object_bytes": int(per_object[1]) if per_object else None,
                "settled_bytes": int(found["settled"]), "held_bytes": int(found["held"])}  # fmt: skip

    def facade_events(self) -> dict:
        """The Assistants API on the Responses API: per-event delay and TTFB against the plain pass-through,
        each text delta matched to the upstream event it came from (bench/facade_events.py)."""
        streams = max(20, self.plan.stream_n)
        out = subprocess.run([sys.executable, str(BENCH / "facade_events.py"), "--streams", str(streams)], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=900).stdout  # fmt: skip
        pattern = r"(\w+): (\d+) deltas, per-event delay p50 (\d+) µs, p99 (\d+) µs; TTFB p50 ([\d.]+) ms"
        return {protocol: {"deltas": int(n), "p50_us": int(p50), "p99_us": int(p99), "ttfb_p50_ms": float(ttfb)}
                for protocol, n, p50, p99, ttfb in re.findall(pattern, out)}  # fmt: skip

    # the run
    def run(self) -> None:
        args, p = self.args, self.plan
        started = time.time()
        measure.Budget.seconds = p.extra_budget_s
        self.results["meta"] = report.machine(args, self.layout, VENV, pyspy_bin())
        self.start_infra()
        self.results["meta"]["sim_workers"] = args.sim_workers
        for name in args.targets:
            entry = self.results["targets"].setdefault(name, {})
            if "facade" not in VARIANTS.get(name, ()):  # the canned upstream answers the Assistants API only
                log(f"{name}: non-streaming (upstream: nginx, canned run object)")
                try:
                    entry["nonstream"] = self.nonstream(name)
                except Exception as exc:  # noqa: BLE001 - a failing peer is reported, the run goes on
                    entry["nonstream_error"] = f"{type(exc).__name__}: {exc}"
                    log(f"  {name}: FAILED: {exc}")
                self.save()
            log(f"{name}: streaming (upstream: the simulator)")
            try:
                entry["stream"] = self.stream(name)
            except Exception as exc:  # noqa: BLE001
                entry["stream_error"] = f"{type(exc).__name__}: {exc}"
                log(f"  {name}: FAILED: {exc}")
            self.save()
        if "gateway" in args.targets and not args.skip_gateway_extras:
            for phase in ("ablation", "soak", "integrity", "profile", "state_memory", "facade_events"):
                if phase == "ablation" and not p.ablations:
                    continue
                log(f"gateway: {phase}")
                try:
                    self.results["gateway"][phase] = getattr(self, phase)()
                except Exception as exc:  # noqa: BLE001
                    self.results["gateway"][phase] = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"  {phase}: FAILED: {exc}")
                self.save()
        self.results["meta"]["duration_s"] = round(time.time() - started, 1)
        self.results["meta"]["quiet_budget"] = {"seconds": measure.Budget.seconds, "spent": round(measure.Budget.spent, 1)}
        self.results["evaluation"] = report.evaluate(self.results)
        path = self.save()
        text = report.markdown(self.results)
        md = self.out / f"report-{self.stamp}.md"
        md.write_text(text)
        (self.out / "report.md").write_text(text)
        print(text)
        log(f"raw numbers: {path}; report: {md}")


def rebuild_report(path: Path) -> int:
    results = json.loads(path.read_text())
    for _kind, prof in (results.get("gateway", {}).get("profile") or {}).items():
        raw = Path(prof.get("raw", ""))
        if raw.exists():
            prof.update(analyse(raw))
    results["evaluation"] = report.evaluate(results)
    path.write_text(json.dumps(results, indent=1, default=str))
    text = report.markdown(results)
    md = path.with_name(path.name.replace("results-", "report-").replace(".json", ".md"))
    md.write_text(text)
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases (~3-4 min) instead of the full run")
    parser.add_argument("--setup", action="store_true", help="install nginx, wrk, and the LiteLLM/py-spy venv, then run")
    parser.add_argument("--setup-only", action="store_true", help="install, do not run")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated subset of {','.join(TARGETS)} (direct is needed for the ratios)")
    parser.add_argument("--skip-gateway-extras", action="store_true", help="no soak / saturation audit / profile")
    parser.add_argument("--sim-workers", type=int, default=1, help="simulator processes on one port (SO_REUSEPORT)")
    parser.add_argument("--hold", type=int, help="held-open streams (default 5000; 2000 with --quick)")
    parser.add_argument("--soak", type=int, help="soak requests (default 100000; 20000 with --quick)")
    parser.add_argument("--no-pin", action="store_true", help="no taskset: let the scheduler place everything")
    parser.add_argument("--no-boost", action="store_true",
                        help="latency phases without autogroup nice -10 (see README: shared machines)")
    parser.add_argument("--out", default=str(BENCH / "out"), help="where JSON and reports go (default bench/out)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, logs)")
    parser.add_argument("--report-only", metavar="RESULTS_JSON",
                        help="rebuild the report from a results file (re-reading its py-spy stacks); run nothing")
    args = parser.parse_args()
    if args.report_only:
        return rebuild_report(Path(args.report_only))
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    if args.setup or args.setup_only:
        setup()
        if args.setup_only:
            return 0
    missing = [tool for tool in ("nginx", "wrk", "taskset") if not shutil.which(tool)]
    if missing:
        print(f"missing: {', '.join(missing)}; run: python bench/run.py --setup", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2 and not args.no_pin:
        args.no_pin = True
    plan = QUICK if args.quick else FULL
    if args.hold:
        plan = replace(plan, hold_n=args.hold)
    if args.soak:
        plan = replace(plan, soak_n=args.soak, max_owned=max(1000, args.soak // 10))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    bench = Bench(args, plan)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        return 130
    finally:
        stop_all()
        if args.keep_tmp:
            log(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
