"""`serve --workers N --mock-upstream`: one simulator, in a process of its own, that every worker uses.

Not a thread of the arbiter: gunicorn forks the workers from the arbiter, and a fork while another
thread holds a lock (the simulator's loop, logging) can leave the child stuck on it; a forked
worker would also hold copies of the simulator's sockets. The arbiter binds the listening socket
(so its port is known before anything starts) and hands it to the child.

The child runs this module (`python -m gateway.cli.shared_simulator <fd> <arbiter pid>`). It stops when the
arbiter sends SIGTERM, after the workers' drain (their streams still read from it), or when the
arbiter is gone; Ctrl-C or a hang-up reaching the whole process group is for the arbiter to act on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import uvloop
from aiohttp import web

from gateway.simulator import build_simulator_app

STOP_TIMEOUT_S = 10.0
PARENT_CHECK_S = 1.0


class SharedSimulator:
    """The simulator process, listening on a free loopback port from the start."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
            fd = listener.fileno()
            command = [sys.executable, "-m", __name__, str(fd), str(os.getpid())]
            self._process = subprocess.Popen(command, pass_fds=(fd,))

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def _serve(fd: int, parent: int) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    loop = uvloop.new_event_loop()  # (gunicorn, hence `--workers`, runs where uvloop does)
    loop.add_signal_handler(signal.SIGTERM, _stop)
    loop.create_task(_stop_with_parent(parent))
    listener = socket.socket(fileno=fd)
    web.run_app(build_simulator_app(), sock=listener, handle_signals=False, access_log=None, print=None, loop=loop)


def _stop() -> None:
    raise web.GracefulExit()


async def _stop_with_parent(parent: int) -> None:
    """The arbiter killed outright (SIGKILL, the OOM killer) never sends SIGTERM: go when it is gone.
    `parent` is its pid as it said, not this process's parent at start-up: it may be gone already."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_S)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
