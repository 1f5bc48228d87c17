"""One worker of `serve --workers N`: a whole gateway (event loop, upstream pool, reconciler, reload
triggers) in a gunicorn worker process, on aiohttp's `GunicornUVLoopWebWorker`.

The arbiter (`gateway/cli/arbiter.py`) forks it with a number of its own, 0..N-1, which names its
audit chain; everything else it needs was imported and configured before the fork.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from aiohttp import web
from aiohttp.worker import GunicornUVLoopWebWorker

from gateway.cli.serve import gateway_app, gateway_runner
from gateway.config import Config
from gateway.keys import RELOAD_WORKERS


@dataclass(frozen=True, slots=True)
class WorkerStart:
    """What every worker starts from (the arbiter's, inherited at fork)."""

    config: Config
    config_path: Path | None
    simulator_url: str | None  # the one simulator of `--mock-upstream`, which every worker uses


class GatewayWorker(GunicornUVLoopWebWorker):
    index = 0
    """Which worker this is, 0..N-1 among the live ones: set by the arbiter just before it forks."""

    def load_wsgi(self) -> None:
        # aiohttp's worker awaits `self.wsgi()` for its runner: this worker's, with its own audit chain.
        self.wsgi = partial(self.app.wsgi(), self.index, self.ppid)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM: the serving loop ends and the runner drains (`GatewayRunner.cleanup`), as one
        process does. Waking the loop now, not at its next heartbeat a second later, starts the
        drain deadline when the signal came. A second SIGTERM changes nothing."""
        super().handle_exit(sig, frame)
        self._notify_waiter_done()


async def worker_runner(start: WorkerStart, index: int, arbiter_pid: int) -> web.AppRunner:
    """The runner worker `index` serves on (aiohttp's worker sets it up on the arbiter's sockets)."""
    config = worker_config(start.config, index)
    app = await gateway_app(config, start.config_path, simulator_url=start.simulator_url)
    # POST /admin/reload, answered here: the arbiter sends every worker SIGHUP, so all reload from the file.
    reload_all: Callable[[], None] = partial(os.kill, arbiter_pid, signal.SIGHUP)
    app[RELOAD_WORKERS] = reload_all
    return gateway_runner(app, config, handle_signals=False)  # the worker's own handlers: SIGTERM drains


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
