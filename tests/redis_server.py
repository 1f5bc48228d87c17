"""pytest plugin: `redis_server`, a real `redis-server` on a free port for one test.

No persistence, bound to 127.0.0.1, its files in the test's tmp dir. `stop()` kills it (an outage),
`start()` brings it back on the same port (empty: nothing is saved), `pause()` / `resume()` freeze
and thaw it (SIGSTOP / SIGCONT: connections stay open and nothing answers, the timeout case).
Without `redis-server` the test is skipped, unless `CI` is set: CI installs it, so there it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

_READY_TIMEOUT_S = 5.0


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, executable: str, directory: Path, options: tuple[str, ...] = ()) -> None:
        self.executable = executable
        self.directory = directory
        self.options = options  # after the defaults, so they override them (a cluster node's, persistence)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        command = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log),
            *self.options,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not _pong(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill it (SIGKILL: no goodbye to the clients, like a crash or a network cut)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


def executable() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must run the Redis tests (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses `redis_server` starts a real redis-server: it is an `integration` test."""
    for item in items:
        if "redis_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(executable(), directory)
    for attempt in range(3):  # the free port can be taken between choosing it and binding it
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()
    try:
        yield server
    finally:
        server.stop()
