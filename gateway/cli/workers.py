"""Several worker processes on one port: `serve --workers N` (or `listen.workers: N`).

Each worker is a whole gateway, a gunicorn worker forked by an embedded gunicorn arbiter
(`gateway/cli/arbiter.py`, `gateway/cli/worker.py`); the arbiter serves nothing. What the workers
must agree on lives outside them: limits, budgets and thread ownership in Redis (memory state is
refused, see `Config.worker_problems`); metrics in prometheus_client's multiprocess files, so
/metrics in any worker shows the sum of all; and each worker keeps its own audit chain
(`audit.w0.jsonl`, `audit.w1.jsonl`, ...), since two writers must never extend one chain.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from gateway.cli.logs import configure_logging
from gateway.cli.shared_simulator import SharedSimulator
from gateway.config import Config

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve_workers(config: Config, *, config_path: Path | None, mock_upstream: bool = False) -> int:
    """Run `listen.workers` workers until SIGTERM: 0 after a clean drain, 1 if a worker died."""
    configure_logging(config.telemetry)
    # Fresh, so no file of an earlier run adds to this one's counters. prometheus_client reads the
    # variable once, at import, and the workers inherit the arbiter's modules at fork: so it is set
    # before the arbiter imports the gateway (below), which imports prometheus_client.
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess directory was set")
    metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir
    arbiter = os.getpid()
    simulator = SharedSimulator() if mock_upstream else None
    try:
        from gateway.cli.arbiter import GatewayApplication
        from gateway.cli.worker import WorkerStart

        start = WorkerStart(config, config_path, simulator.url if simulator else None)
        try:
            GatewayApplication(config, start, metrics_dir).run()
        except SystemExit as stopped:  # the arbiter ends by sys.exit, with its status
            if os.getpid() != arbiter:
                # A worker: gunicorn forked it deep inside `run` and ends it by sys.exit, which
                # unwinds it through this function too. Its status is its own.
                raise
            return stopped.code if isinstance(stopped.code, int) else int(stopped.code is not None)
        return 0
    finally:
        if os.getpid() == arbiter:  # (not in a worker: the directory and the simulator outlive it)
            if simulator is not None:
                simulator.stop()  # only now: the workers' draining streams were still reading from it
            shutil.rmtree(metrics_dir, ignore_errors=True)
