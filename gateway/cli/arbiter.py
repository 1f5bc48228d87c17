"""gunicorn, embedded: the arbiter that forks `listen.workers` gateway workers and watches them.

aiohttp's documented deployment (its `GunicornUVLoopWebWorker`, here `GatewayWorker`), with
gunicorn's defaults changed where the gateway needs it:

- Each worker binds the port itself with SO_REUSEPORT (`reuse_port`), so the kernel spreads
  connections evenly across the workers rather than waking every worker for each one.
- SIGHUP reloads each worker's config in place (`gateway/ops/reload.py`) rather than gunicorn's
  replacing every worker: open streams keep flowing, and two workers never extend one audit chain.
- A worker that dies unasked stops the others and the arbiter exits 1, rather than being
  respawned: whatever runs the gateway restarts it whole (a worker that crashes may keep crashing).
- SIGTERM gives each worker `graceful_timeout` to drain, enough for two of aiohttp's shutdown
  timeouts (see `DRAIN_GRACE_S`) and the audit writer's last records; past it gunicorn kills. Tracing
  stops last (`gateway/app.py`), so what a kill can cut short is spans waiting for a collector.
- prometheus_client's multiprocess mode as it documents it with gunicorn: `child_exit` marks the
  worker dead, so its live gauges (open streams) leave the sum.
"""

from __future__ import annotations

import math
import os
import signal
from functools import partial
from typing import Any

import structlog
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer
from prometheus_client.multiprocess import mark_process_dead

from gateway.cli.serve import DRAIN_GRACE_S
from gateway.cli.worker import GatewayWorker, WorkerStart, worker_runner
from gateway.config import Config

log = structlog.get_logger("gateway.workers")

WORKER_TIMEOUT_S = 60
"""gunicorn kills a worker whose event loop has not beaten its heartbeat (once a second) for this
long: a worker stuck for good. Also the most a worker may take to start (imports are done before
the fork; this is the app's start-up: the upstream pool, the Redis connection)."""

EXIT_GRACE_S = 5
"""Besides two drain timeouts: the audit writer's last records, the state and the pool closing."""

WORKER_DIED = 1


class GatewayApplication(BaseApplication):
    def __init__(self, config: Config, start: WorkerStart, metrics_dir: str) -> None:
        self._config = config
        self._start = start
        self.metrics_dir = metrics_dir  # (read by the `when_ready` hook, to log it)
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_settings(self._config).items():
            self.cfg.set(name, value)

    def load(self) -> partial[Any]:
        return partial(worker_runner, self._start)  # each worker binds its own number (GatewayWorker)

    def run(self) -> None:
        GatewayArbiter(self).run()


def gunicorn_settings(config: Config) -> dict[str, object]:
    listen = config.listen
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return {
        "bind": [f"{host}:{listen.port}"],
        "workers": listen.workers,
        "worker_class": GatewayWorker,
        "reuse_port": True,
        "graceful_timeout": math.ceil(2 * (listen.drain_timeout_s + DRAIN_GRACE_S)) + EXIT_GRACE_S,
        "timeout": WORKER_TIMEOUT_S,
        # gunicorn's own lines are plain text: only what needs a look (a worker killed, timed out);
        # the lifecycle is logged here, as JSON like the rest.
        "loglevel": "warning",
        "control_socket_disable": True,  # no gunicornc socket in $HOME: `--workers` is the interface
        "when_ready": _when_ready,
        "pre_fork": _pre_fork,
        "post_fork": _post_fork,
        "child_exit": _child_exit,
    }


class GatewayArbiter(Arbiter):
    """gunicorn's arbiter, with SIGHUP forwarded and a dead worker stopping the rest (see above)."""

    stopping = False

    def handle_hup(self) -> None:
        log.info("reload_forwarded", workers=len(self.WORKERS))
        self.kill_workers(signal.SIGHUP)

    def stop(self, graceful: bool = True) -> None:
        if not self.stopping:  # (SIGINT stops twice: gunicorn's quick stop, then its halt)
            log.info("workers_stopping", workers=len(self.WORKERS), graceful_timeout_s=self.cfg.graceful_timeout)
        self.stopping = True  # from here on, workers exiting is what was asked
        super().stop(graceful)

    def free_index(self) -> int:
        taken = {worker.index for worker in self.WORKERS.values()}
        return min(set(range(len(taken) + 1)) - taken)

    def worker_exited(self, worker: GatewayWorker) -> None:
        mark_process_dead(worker.pid)  # its live gauges (open streams) leave the sum
        # Fewer workers than wanted, and not stopping: nobody asked this one to go (SIGTTOU, which
        # lowers the count first, does; so does the arbiter's own stop).
        if self.stopping or len(self.WORKERS) >= self.num_workers:
            log.info("worker_stopped", worker=worker.index, pid=worker.pid)
            return
        log.error("worker_died", worker=worker.index, pid=worker.pid)
        raise HaltServer("a worker died", WORKER_DIED)  # gunicorn stops the others, then exits 1


def _when_ready(arbiter: GatewayArbiter) -> None:
    url = f"http://{arbiter.cfg.bind[0]}/v1"
    log.info("arbiter_started", workers=arbiter.num_workers, url=url, metrics_dir=arbiter.app.metrics_dir, pid=os.getpid())


def _pre_fork(arbiter: GatewayArbiter, worker: GatewayWorker) -> None:
    worker.index = arbiter.free_index()  # the lowest one free: a chain is only ever one live worker's


def _post_fork(arbiter: GatewayArbiter, worker: GatewayWorker) -> None:
    structlog.contextvars.bind_contextvars(worker=worker.index)  # every log line says which worker
    log.info("worker_started", pid=os.getpid())


def _child_exit(arbiter: GatewayArbiter, worker: GatewayWorker) -> None:
    arbiter.worker_exited(worker)
