"""pytest plugin: `redis_cluster`, a real three-node Redis Cluster (three masters, no replicas).

Made the way an operator makes one: three `redis-server --cluster-enabled yes`, then `redis-cli
--cluster create`. One cluster serves the whole session (a cluster takes seconds to form) and is
flushed before each test; `fresh_redis_cluster` is a test's own, for tests that stop a node. Nodes
keep an append-only file (fsync on every write), so a node killed and started again comes back with
its data, like a restarted pod with its volume; `cluster-require-full-coverage no`, so the other
nodes serve their slots meanwhile. Skipped without redis-server, except in CI (see redis_server).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from tests.redis_server import RedisServer, executable
from tests.support import free_port

_FORMED_TIMEOUT_S = 30.0


class RedisCluster:
    def __init__(self, directory: Path) -> None:
        self.nodes: list[RedisServer] = []
        for n in range(3):
            node_dir = directory / f"node{n}"
            node_dir.mkdir(parents=True)
            options = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()),  # (the default, port + 10000, may not exist)
                "--cluster-node-timeout", "1000",
                "--cluster-require-full-coverage", "no",
                "--appendonly", "yes",
                "--appendfsync", "always",
            )  # fmt: skip
            self.nodes.append(RedisServer(executable(), node_dir, options))

    @property
    def url(self) -> str:
        """What a client is given: one node; it learns the rest from it."""
        return self.nodes[0].url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        _cli("--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
        self.wait_formed()

    def wait_formed(self) -> None:
        """Until every node sees every slot served (after a create, or a node's restart)."""
        deadline = time.monotonic() + _FORMED_TIMEOUT_S
        while not all("cluster_state:ok" in _cli("-p", str(node.port), "cluster", "info") for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not form")
            time.sleep(0.05)

    def node_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot."""
        slot = key_slot(key.encode())
        for node in self.nodes:
            mine = next(line for line in _cli("-p", str(node.port), "cluster", "nodes").splitlines() if "myself" in line)
            for served in mine.split()[8:]:
                first, _, last = served.partition("-")
                if int(first) <= slot <= int(last or first):
                    return node
        raise LookupError(f"no node serves slot {slot}")

    def restart(self, node: RedisServer) -> None:
        node.start()  # same port, same directory: its nodes.conf and its append-only file
        self.wait_formed()

    def flush(self) -> None:
        for node in self.nodes:
            _cli("-p", str(node.port), "flushall")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cli(*args: str) -> str:
    found = shutil.which("redis-cli")
    if found is None:
        pytest.fail("redis-cli is not installed (Debian: redis-tools, which redis-server depends on)")
    done = subprocess.run([found, *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"redis_cluster", "fresh_redis_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _session_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster(_session_cluster: RedisCluster) -> RedisCluster:
    _session_cluster.flush()
    return _session_cluster


@pytest.fixture
def fresh_redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path / "redis-cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
