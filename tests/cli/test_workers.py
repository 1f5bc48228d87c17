"""`serve --workers 2` as a user runs it: real worker processes on one port (SO_REUSEPORT), a real
redis-server, the simulator upstream, the official SDK as client. Each run uses a fresh client, so
a fresh connection, which the kernel may hand to either worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import yaml
from prometheus_client.samples import Sample

from tests.cli.test_main import REPO, gateway_cli
from tests.support import free_port, series

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # worker processes, a redis-server; seconds each

ENV = {"UP": "sk-upstream", "TEAM": "sk-team", "CAPPED": "sk-capped", "ADMIN": "sk-admin", "METRICS": "sk-metrics"}
THREAD = {"messages": [{"role": "user", "content": "hi"}]}
RPM = 5
BUDGET = 100_000
T = TypeVar("T")
STARTUP_S = 60.0  # the arbiter importing everything, then two workers starting, on a loaded 2-core machine


def gateway_config(redis_url: str, audit_path: Path, port: int, upstream: str | None = None) -> dict[str, Any]:
    """Tenants `team` (unlimited) and `capped` (RPM requests a minute, BUDGET tokens a day, each run
    reserving 2000); admin key sk-admin."""
    caps = {"tokens": {"max_prompt_tokens": {"max": 1000}, "max_completion_tokens": {"max": 1000}}}
    return {
        "listen": {"port": port, "drain_timeout_s": 20},
        "upstream": {"api_key": "${UP}", **({"base_url": upstream} if upstream else {})},
        "tenants": {"team": {"keys": ["${TEAM}"]}, "capped": {"keys": ["${CAPPED}"], "policy": "capped"}},
        "policies": {"capped": caps},
        "limits": {
            "tenants": {"capped": {"requests_per_minute": RPM, "tokens_per_day": BUDGET}},
            "reconcile_interval_s": 0.2,  # each worker publishes the budget gauges this often
        },
        "state": {"backend": "redis", "url": redis_url, "timeout_s": 2.0},
        "admin": {"keys": ["${ADMIN}"]},
        "audit": {"sink": "file", "path": str(audit_path)},
    }


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Whole or not at all: the workers' file watchers must never read a half-written file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config))
    os.replace(temporary, path)


@dataclass
class Served:
    """A running `serve --workers 2`: the parent process, its URL, and the log every process writes."""

    process: subprocess.Popen[bytes]
    url: str
    config_path: Path
    log_path: Path

    def client(self, key: str = "sk-team", **kwargs: Any) -> openai.OpenAI:
        """A fresh client: its own connection pool, so its own connection."""
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def async_client(self, key: str = "sk-team", **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kwargs)

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [record for record in map(_json, lines) if record.get("event") == event]

    def worker_pids(self) -> list[int]:
        return [record["pid"] for record in self.logged("worker_started")]

    def samples(self, name: str, **labels: str) -> list[Sample]:
        """One scrape on a fresh connection (either worker answers): the series matching `labels`."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        return series(text, name, **labels)

    def metric(self, name: str, **labels: str) -> float:
        return sum(sample.value for sample in self.samples(name, **labels))


def _json(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def started(process: subprocess.Popen[bytes], up: Callable[[], bool]) -> None:
    def check() -> bool:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            return up()
        except OSError:  # refused, reset, or a 503 (urllib's HTTPError is an OSError)
            return False

    eventually(check, STARTUP_S)


def ready(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
        return response.status == 200


def listening(port: int, sockets: int = 1) -> bool:
    """`sockets` listening on 127.0.0.1:port (the kernel's table: with SO_REUSEPORT, one per worker)."""
    local = f"0100007F:{port:04X}"
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for row in rows if row[1] == local and row[3] == "0A") >= sockets  # 0A: LISTEN


@pytest.fixture
def serve_workers(tmp_path: Path, redis_server: Any) -> Iterator[Callable[..., Served]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(*flags: str, upstream: str | None = None, telemetry: dict[str, Any] | None = None, **listen: Any) -> Served:
        port = free_port()
        config = gateway_config(redis_server.url, tmp_path / "audit.jsonl", port, upstream)
        config["listen"].update(listen)
        config["telemetry"] = telemetry or {}
        path, log_path = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
        write_config(path, config)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(path), *flags],
                # TMPDIR: what a killed arbiter leaves behind (its metrics directory) stays in the test's.
                cwd=REPO, env={**os.environ, **ENV, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True,  # its own process group: teardown can reach every worker
            )  # fmt: skip
        processes.append(process)
        served = Served(process, f"http://127.0.0.1:{port}", path, log_path)
        # Every worker listening, not just the first one ready: until then the kernel gives it all.
        started(process, lambda: ready(served.url) and listening(port, sockets=2))
        return served

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulator as its own process, as the upstream in the config (not `--mock-upstream`)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "mock-upstream", "--port", str(port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started(process, lambda: listening(port))
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.kill()
        process.wait(timeout=10)


async def test_workers_share_the_port_and_one_metrics_view(serve_workers, simulator, tmp_path):
    served = serve_workers("--workers", "2", upstream=simulator)
    sent: list[object] = []  # every HTTP request the SDK made

    async def count(request: object) -> None:
        sent.append(request)

    def client() -> openai.AsyncOpenAI:
        return served.async_client(http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]}))

    async with client() as first:
        assistant = (await first.beta.assistants.create(model="gpt-4o")).id
    usages: list[tuple[int, int]] = []

    async def polled() -> None:
        async with client() as each:
            run = await each.beta.threads.create_and_run_poll(assistant_id=assistant, thread=THREAD, poll_interval_ms=5)
        assert run.status == "completed" and run.usage is not None
        usages.append((run.usage.prompt_tokens, run.usage.completion_tokens))  # settled from the poll

    async def streamed() -> None:
        async with client() as each, each.beta.threads.create_and_run_stream(
            assistant_id=assistant, thread=THREAD
        ) as stream:
            await stream.until_done()
            usage = (await stream.get_final_run()).usage
        assert usage is not None
        usages.append((usage.prompt_tokens, usage.completion_tokens))

    await at_most(4, [polled() for _ in range(20)] + [streamed() for _ in range(20)])

    # Every worker's counters, summed, whichever worker answers the scrape.
    eventually(lambda: served.metric("gateway_requests_total", tenant="team") == len(sent))
    for _ in range(8):
        assert served.metric("gateway_requests_total", tenant="team") == len(sent)
    assert served.metric("gateway_runs_total", tenant="team") == 40
    assert served.metric("gateway_tokens_total", tenant="team", type="input") == sum(u[0] for u in usages)
    assert served.metric("gateway_tokens_total", tenant="team", type="output") == sum(u[1] for u in usages)
    assert served.metric("gateway_active_streams", tenant="team") == 0

    # Both workers served run calls: each keeps its own audit chain, and both verify.
    files = [tmp_path / "audit.w0.jsonl", tmp_path / "audit.w1.jsonl"]
    eventually(lambda: sum(len(audited(f)) for f in files) == 2 * 40)
    assert all(audited(f) for f in files)
    verified = gateway_cli("audit", "verify", *map(str, files))
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def at_most(concurrency: int, calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """The SDK calls, `concurrency` at a time, on one event loop (the sync client in threads once
    handed back a run whose `usage` was a dict)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await call

    return await asyncio.gather(*map(one, calls))


def audited(path: Path) -> list[dict[str, Any]]:
    """A worker's audit records so far (a line still being written is left for the next look)."""
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [record for record in map(_json, lines) if record]


async def test_a_rate_limit_holds_across_workers(serve_workers):
    served = serve_workers("--workers", "2", "--mock-upstream")
    async with served.async_client("sk-capped") as client:
        assistant = (await client.beta.assistants.create(model="gpt-4o")).id

    async def one() -> bool:
        async with served.async_client("sk-capped") as client:
            try:
                await client.beta.threads.create_and_run(assistant_id=assistant)
            except openai.RateLimitError:
                return False
            return True

    runs = RPM - 1  # creating the assistant was the first request of the minute
    admitted = await at_most(4, [one() for _ in range(4 * RPM)])
    assert sum(admitted) == runs
    # Both workers took part, each answering some calls against the one shared window; only the
    # admitted ones reached the upstream.
    files = [served.config_path.parent / f"audit.w{i}.jsonl" for i in (0, 1)]
    outcomes = lambda: [[r for r in audited(f) if r["kind"] == "outcome"] for f in files]  # noqa: E731
    eventually(lambda: sum(map(len, outcomes())) == 4 * RPM)  # written just after each answer
    assert all(outcomes())
    assert sum(r["upstream_status"] == 200 for each in outcomes() for r in each) == runs

    # Both workers publish the budget from the shared ledger: one series (no per-process copies),
    # the same on every scrape. Nothing settled yet, so what the admitted runs reserved is gone.
    left = BUDGET - runs * 2000
    eventually(lambda: served.metric("gateway_budget_remaining_tokens", tenant="capped", period="day") == left)
    for _ in range(6):
        (remaining,) = served.samples("gateway_budget_remaining_tokens", tenant="capped", period="day")
        (limit,) = served.samples("gateway_budget_limit_tokens", tenant="capped", period="day")
        assert (remaining.value, limit.value, "pid" in remaining.labels) == (left, BUDGET, False)


def test_a_reload_reaches_every_worker(serve_workers):
    served = serve_workers("--workers", "2", "--mock-upstream")
    reloads = lambda: served.metric("gateway_config_reloads_total", result="ok")  # noqa: E731

    served.process.send_signal(signal.SIGHUP)  # the parent forwards it to each worker
    eventually(lambda: reloads() >= 2)
    assert reloads() == 2
    request = urllib.request.Request(
        f"{served.url}/admin/reload", method="POST", headers={"Authorization": "Bearer sk-admin"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    eventually(lambda: reloads() >= 4)  # the worker that answered, then the other one

    config = yaml.safe_load(served.config_path.read_text())
    config["policies"]["default"] = {"models": {"deny": ["gpt-4o-mini"]}}
    seen = len(served.logged("config_reloaded"))
    write_config(served.config_path, config)
    served.process.send_signal(signal.SIGHUP)
    eventually(lambda: {r["worker"] for r in served.logged("config_reloaded")[seen:]} == {0, 1})

    with served.client() as client:
        assistant = client.beta.assistants.create(model="gpt-4o").id
    for _ in range(12):  # fresh connections: both workers answer some
        with served.client() as client, pytest.raises(openai.PermissionDeniedError):
            client.beta.threads.create_and_run(assistant_id=assistant, model="gpt-4o-mini")
    with served.client() as client:
        assert client.beta.threads.create_and_run(assistant_id=assistant).status == "queued"


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_sigterm_drains_open_streams_then_every_worker_exits(serve_workers, stop):
    served = serve_workers("--mock-upstream", workers=2)  # listen.workers from the file
    client = served.client()
    assistant = client.beta.assistants.create(model="gpt-4o").id
    events = []
    with client, client.beta.threads.create_and_run(
        assistant_id=assistant, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    ) as stream:
        for event in stream:
            events.append(event.event)
            if len(events) == 3:
                assert served.metric("gateway_active_streams", tenant="team") == 1  # whichever worker answers
                if stop == "sigterm":
                    served.process.send_signal(signal.SIGTERM)
                else:  # the terminal's SIGINT reaches every process, the simulator too: it goes on serving
                    os.killpg(served.process.pid, signal.SIGINT)
    assert events[-1] == "thread.run.completed"
    assert served.process.wait(timeout=60) == 0
    assert len(served.worker_pids()) == 2
    for pid in served.worker_pids():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not Path(served.logged("arbiter_started")[0]["metrics_dir"]).exists()


def test_metrics_on_their_own_port_behind_a_key_sum_every_worker(serve_workers):
    port = free_port()
    served = serve_workers("--workers", "2", "--mock-upstream", telemetry={"metrics": {"port": port, "keys": ["${METRICS}"]}})
    eventually(lambda: listening(port, sockets=2))
    for _ in range(6):  # fresh connections: both workers answer some
        with served.client() as client:
            client.beta.assistants.create(model="gpt-4o")

    def scrape(key: str = "sk-metrics") -> str:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    for _ in range(8):  # fresh connections: whichever worker answers shows the sum
        assert sum(s.value for s in series(scrape(), "gateway_requests_total", tenant="team")) == 6
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape("sk-team")
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as elsewhere:
        urllib.request.urlopen(f"{served.url}/metrics", timeout=10)
    assert elsewhere.value.code == 404


def test_a_worker_that_dies_stops_the_others(serve_workers):
    served = serve_workers("--workers", "2", "--mock-upstream")
    first, second = served.worker_pids()
    os.kill(first, signal.SIGKILL)
    assert served.process.wait(timeout=60) == 1
    assert [record["pid"] for record in served.logged("worker_died")] == [first]
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


def test_a_worker_asked_to_leave_leaves_the_rest_serving(serve_workers):
    """gunicorn's SIGTTOU (one worker fewer) and SIGTTIN (one more): neither is a death, and the one
    that leaves takes nothing shared with it (the metrics directory, the simulator)."""
    served = serve_workers("--workers", "2", "--mock-upstream")
    port = int(served.url.rsplit(":", 1)[1])
    metrics_dir = Path(served.logged("arbiter_started")[0]["metrics_dir"])
    served.process.send_signal(signal.SIGTTOU)
    eventually(lambda: len(served.logged("worker_stopped")) == 1)
    served.process.send_signal(signal.SIGTTIN)
    eventually(lambda: len(served.worker_pids()) == 3 and listening(port, sockets=2))
    assert served.process.poll() is None and metrics_dir.is_dir()
    assert not served.logged("worker_died")
    for _ in range(6):  # fresh connections: both workers answer, through the one simulator
        with served.client() as client:
            assistant = client.beta.assistants.create(model="gpt-4o").id
            assert client.beta.threads.create_and_run(assistant_id=assistant).status == "queued"
    assert served.metric("gateway_requests_total", tenant="team") == 12  # every worker's files still read


def test_workers_and_the_simulator_leave_with_a_killed_arbiter(serve_workers):
    served = serve_workers("--workers", "2", "--mock-upstream")
    served.process.kill()  # the OOM killer, say: no signal to forward, nothing handled
    served.process.wait(timeout=10)

    def gone() -> bool:
        try:
            os.killpg(served.process.pid, 0)  # (its own session: the workers, the simulator)
        except ProcessLookupError:
            return True
        return False

    eventually(gone, timeout=30)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"state": {"backend": "memory"}}, "must share limits, budgets and thread ownership: use state.backend: redis"),
        ({"audit": {"sink": "stdout"}}, "use audit.sink: file (one file per worker) or audit.enabled: false"),
    ],
)
def test_several_workers_refuse_what_they_cannot_share(tmp_path, section, expected):
    config = gateway_config("redis://127.0.0.1:1/0", tmp_path / "audit.jsonl", free_port())
    config.update(section)
    path = tmp_path / "gateway.yaml"
    write_config(path, config)
    done = gateway_cli("serve", "--config", str(path), "--workers", "2", env=ENV)
    assert done.returncode == 2
    assert expected in done.stderr and "listen.workers: 2 worker processes" in done.stderr
    config["listen"]["workers"] = 2
    write_config(path, config)
    assert expected in gateway_cli("check-config", str(path), env=ENV).stderr
