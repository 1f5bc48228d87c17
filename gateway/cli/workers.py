"""Several worker processes on one port: `serve --workers N` (or `listen.workers: N`).

Each worker is a whole gateway (event loop, upstream pool, reconciler, reload triggers) bound to the
same host:port with SO_REUSEPORT, so the kernel spreads connections across them. What the workers
must agree on lives outside them: limits, budgets and thread ownership in Redis (memory state is
refused, see `Config.worker_problems`); metrics in prometheus_client's multiprocess files, so
/metrics in any worker shows the sum of all; and each worker keeps its own audit chain
(`audit.w0.jsonl`, `audit.w1.jsonl`, ...), since two writers must never extend one chain.

The parent serves nothing. It starts the workers (and, for `--mock-upstream`, one simulator on a
thread that they all use), turns SIGTERM or SIGINT into one SIGTERM per worker (each drains as a
single process does), forwards SIGHUP, and relays a worker's `POST /admin/reload` to the others.
A worker that dies unasked stops the rest and the parent exits 1: whatever runs the gateway
restarts it whole, rather than a supervisor respawning a worker that may keep crashing.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import structlog
from aiohttp import web
from prometheus_client.multiprocess import mark_process_dead

from gateway.cli.logs import configure_logging
from gateway.cli.serve import gateway_app, new_event_loop, run_gateway, start_simulator
from gateway.config import Config
from gateway.keys import RELOAD_PEERS

log = structlog.get_logger("gateway.workers")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RELOADED = b"reloaded"
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What one worker starts from; pickled into the spawned process."""

    index: int
    config: Config
    config_path: Path | None
    simulator_url: str | None
    reloaded: Connection  # the worker's end of its pipe to the parent: "I reloaded, now the others"


def serve_workers(config: Config, *, config_path: Path | None, mock_upstream: bool = False) -> int:
    """Run `listen.workers` workers until SIGTERM: 0 after a clean drain, 1 if a worker failed."""
    configure_logging(config.telemetry)
    # Fresh, so no file of an earlier run adds to this one's counters; the workers inherit the
    # variable at exec, before they import prometheus_client (which reads it once, at import).
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir
    simulator = _SimulatorThread() if mock_upstream else None
    try:
        return Supervisor(config, config_path, simulator.url if simulator else None, metrics_dir).run()
    finally:
        if simulator is not None:
            simulator.stop()  # only now: the workers' draining streams were still reading from it
        shutil.rmtree(metrics_dir, ignore_errors=True)


def worker_config(config: Config, index: int) -> Config:
    """Worker `index`'s config: its own audit file, `audit.w<index>.jsonl` for `audit.jsonl`, and its
    own checkpoints file the same way (each checkpoints its own chain)."""
    audit = config.audit
    if audit.sink != "file" or audit.path is None:
        return config
    own = audit.model_copy(update={"path": _of_worker(audit.path, index)})
    if audit.checkpoints is not None:
        checkpoints = audit.checkpoints.model_copy(update={"path": _of_worker(audit.checkpoints.path, index)})
        own = own.model_copy(update={"checkpoints": checkpoints})
    return config.model_copy(update={"audit": own})


def _of_worker(name: str, index: int) -> str:
    path = Path(name)
    return str(path.with_name(f"{path.stem}.w{index}{path.suffix}"))


# The parent ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    index: int
    process: BaseProcess
    reloaded: Connection | None  # the parent's end of the pipe; None once closed


class Supervisor:
    def __init__(self, config: Config, config_path: Path | None, simulator_url: str | None, metrics_dir: str) -> None:
        self._config = config
        self._config_path = config_path
        self._simulator_url = simulator_url
        self._metrics_dir = metrics_dir
        # spawn: a fresh interpreter per worker, never a fork of a process that already has threads.
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._stopping = False
        self._failed = False
        # Signals only wake the loop in `run` (their numbers arrive on this socket), which acts on
        # them: nothing runs inside a signal handler, so logging and bookkeeping never interrupt themselves.
        self._wakeup, self._signalled = socket.socketpair()
        for end in (self._wakeup, self._signalled):
            end.setblocking(False)

    def run(self) -> int:
        signal.set_wakeup_fd(self._signalled.fileno())
        for sig in _HANDLED:
            signal.signal(sig, lambda _sig, _frame: None)
        try:
            for index in range(self._config.listen.workers):
                self._start(index)
            listen = self._config.listen
            url = f"http://{listen.host}:{listen.port}/v1"
            log.info("workers_started", workers=len(self._workers), url=url, metrics_dir=self._metrics_dir)
            while self._workers:
                self._step()
        finally:
            signal.set_wakeup_fd(-1)
            for sig in _HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            self._signalled.close()
            self._wakeup.close()
        return 1 if self._failed else 0

    def _start(self, index: int) -> None:
        reader, writer = self._context.Pipe(duplex=False)
        spec = WorkerSpec(index, worker_config(self._config, index), self._config_path, self._simulator_url, writer)
        process = self._context.Process(target=run_worker, args=(spec,), name=f"gateway-worker-{index}")
        process.start()
        writer.close()  # the worker has its own copy
        self._workers[index] = _Worker(index, process, reader)
        log.info("worker_started", worker=index, pid=process.pid)

    def _step(self) -> None:
        """Wait for anything to happen (a signal, a worker's exit or message), then act on it."""
        handlers: dict[object, Callable[[], None]] = {self._wakeup: self._on_signals}
        for worker in self._workers.values():
            handlers[worker.process.sentinel] = partial(self._reap, worker)
            if worker.reloaded is not None:
                handlers[worker.reloaded] = partial(self._relay_reload, worker)
        for ready in wait(list(handlers)):  # type: ignore[arg-type]  # (sockets, sentinels, pipes: all waitable)
            handlers[ready]()

    def _on_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for number in self._wakeup.recv(64):
                if number == signal.SIGHUP:
                    log.info("reload_forwarded", workers=len(self._workers))
                    self._signal_all(signal.SIGHUP)
                else:
                    self._stop(signal.Signals(number).name)

    def _relay_reload(self, worker: _Worker) -> None:
        """A worker reloaded on `POST /admin/reload`: the others reload from the same file."""
        if worker.reloaded is None:  # reaped in this same step
            return
        try:
            worker.reloaded.recv_bytes()
        except (EOFError, OSError):  # the worker is gone: its sentinel says so
            self._close_pipe(worker)
            return
        log.info("reload_relayed", worker=worker.index)
        self._signal_all(signal.SIGHUP, skip=worker.index)

    def _reap(self, worker: _Worker) -> None:
        process = worker.process
        process.join()
        del self._workers[worker.index]
        self._close_pipe(worker)
        if process.pid is not None:
            mark_process_dead(process.pid, self._metrics_dir)  # its live gauges (open streams) leave the sum
        # Killed by our own SIGTERM is a clean stop too: that only happens before aiohttp took the
        # signal over, which it does before it listens, so the worker had no connection to drain.
        if self._stopping and process.exitcode in (0, -signal.SIGTERM):
            log.info("worker_stopped", worker=worker.index, pid=process.pid, exitcode=process.exitcode)
            return
        log.error("worker_died", worker=worker.index, pid=process.pid, exitcode=process.exitcode)
        self._failed = True
        self._stop("worker_died")

    def _stop(self, reason: str) -> None:
        if self._stopping:
            return  # each worker already has its SIGTERM; a second would not make it drain faster
        self._stopping = True
        log.info("workers_stopping", reason=reason, drain_timeout_s=self._config.listen.drain_timeout_s)
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals, skip: int | None = None) -> None:
        for worker in self._workers.values():
            if worker.index != skip and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, sig)

    @staticmethod
    def _close_pipe(worker: _Worker) -> None:
        if worker.reloaded is not None:
            worker.reloaded.close()
            worker.reloaded = None


class _SimulatorThread:
    """`--mock-upstream` with workers: one simulator on a free loopback port, on a thread of the parent."""

    def __init__(self) -> None:
        self._loop = new_event_loop()
        self._simulator = self._loop.run_until_complete(start_simulator())
        self.url = self._simulator.url
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.run_until_complete(self._simulator.runner.cleanup())
        self._loop.close()


# A worker -----------------------------------------------------------------------------------------


def run_worker(spec: WorkerSpec) -> None:
    """In the spawned process: one whole gateway on the shared port, until SIGTERM and its drain."""
    structlog.contextvars.bind_contextvars(worker=spec.index)  # every log line says which worker
    configure_logging(spec.config.telemetry)
    _stop_with_parent()
    run_gateway(_worker_app(spec), spec.config, reuse_port=True)


async def _worker_app(spec: WorkerSpec) -> web.Application:
    app = await gateway_app(spec.config, spec.config_path, simulator_url=spec.simulator_url)
    reload_peers: Callable[[], None] = partial(spec.reloaded.send_bytes, _RELOADED)
    app[RELOAD_PEERS] = reload_peers
    app.on_startup.append(_worker_signals)
    return app


async def _worker_signals(app: web.Application) -> None:
    """Take over SIGINT and SIGTERM from aiohttp, which set them up just before on_startup."""
    loop = asyncio.get_running_loop()
    # Ctrl-C reaches the whole process group; the parent turns it into one SIGTERM per worker.
    loop.remove_signal_handler(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop.add_signal_handler(signal.SIGTERM, _drain, loop)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """The first SIGTERM drains, as in one process. Later ones are ignored: systemd signals the whole
    group while the parent forwards its own, and a second would cut the drain (bounded anyway by
    `listen.drain_timeout_s`) short."""
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise web.GracefulExit()


def _stop_with_parent() -> None:
    """A worker outliving its parent (SIGKILL, OOM killer) would hold the port for good: drain and go."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the spawn pipe closes, i.e. it is gone
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
