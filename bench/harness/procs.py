"""Processes the benchmark starts (and always stops), free ports, memory and CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_RUNNING: list[Proc] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    """A child process in its own session (so its whole group is stopped by its own pid)."""

    name: str
    argv: list[str]
    log: Path
    cpus: str | None = None  # taskset CPU list; None: unpinned
    env: dict[str, str] | None = None
    cwd: Path | None = None
    stdin: int | None = subprocess.DEVNULL
    stdout: int | None = None  # None: to the log file
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Proc:
        cmd = (["taskset", "-c", self.cpus] if self.cpus else []) + self.argv
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = self.log.open("ab")
        self._logf.write(f"\n# {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
        self._logf.flush()
        self.popen = subprocess.Popen(
            cmd,
            stdin=self.stdin,
            stdout=self.stdout if self.stdout is not None else self._logf,
            stderr=self._logf,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,
        )
        _RUNNING.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process group (led by our child's own pid); SIGKILL it if it lingers."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Anything the group left behind (e.g. nginx workers after a master crash).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._logf.close()
        return self.popen.returncode


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """The scheduler weighs sessions (autogroups) against each other; a process's own nice value only
    counts within its session. Needs root; harmless when it fails."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def boosted(enabled: bool, nice: int = -10):
    """Latency phases (at most about one core busy) run at autogroup nice -10, so that test runs of
    other sessions sharing the machine delay the relay less; back to 0 afterwards (and never during
    saturation phases, which would starve them)."""
    pids = [os.getpid(), *(p.pid for p in _RUNNING if p.alive())] if enabled else []
    done = [pid for pid in pids if set_autogroup_nice(pid, nice)]
    try:
        yield bool(done)
    finally:
        for pid in done:
            set_autogroup_nice(pid, 0)


def stop_all() -> None:
    for proc in reversed(list(_RUNNING)):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)


def wait_port(port: int, timeout: float = 30.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early (see {proc.log})")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s" + (f" ({proc.log})" if proc else ""))


def wait_http(url: str, timeout: float = 60.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited early (see {proc.log})")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
            last = exc
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def http_json(url: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> object:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def http_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


# --- memory ---------------------------------------------------------------------------------------


def _ppids() -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    ppids = _ppids()
    children: dict[int, list[int]] = {}
    for pid, ppid in ppids.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in ppids or pid == root:
            found.append(pid)
            todo.extend(children.get(pid, []))
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(root: int) -> dict[str, int]:
    """RSS and PSS (KiB) summed over a process tree; PSS does not count shared pages twice."""
    pids = tree(root)
    return {
        "processes": len(pids),
        "rss_kib": sum(_status_kib(p, "VmRSS") for p in pids),
        "pss_kib": sum(_pss_kib(p) for p in pids),
    }


# --- CPU ------------------------------------------------------------------------------------------


def _machine_busy() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def _proc_cpu(pid: int) -> int:
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # utime stime cutime cstime: fields 14-17 (1-based), i.e. 11-14 after the ")" split.
    return sum(int(x) for x in parts[11:15])


class CpuWatch:
    """Machine CPU used during a phase, split into ours (this harness's process tree, children
    included) and foreign (anything else on the machine: other engineers' test runs...)."""

    def __init__(self) -> None:
        self.me = os.getpid()

    def _ours(self) -> int:
        return sum(_proc_cpu(p) for p in tree(self.me))

    def start(self) -> None:
        self._t = time.monotonic()
        self._busy, _ = _machine_busy()
        self._ours0 = self._ours()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t
        busy, _ = _machine_busy()
        ours = self._ours() - self._ours0
        machine = (busy - self._busy) / CLK_TCK / elapsed
        mine = ours / CLK_TCK / elapsed
        return {"machine_cores": round(machine, 3), "ours_cores": round(mine, 3), "foreign_cores": round(max(0.0, machine - mine), 3)}


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
