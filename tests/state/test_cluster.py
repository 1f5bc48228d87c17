"""A real three-node Redis Cluster that loses a node mid-test (`fresh_redis_cluster`, tests/redis_cluster.py).

The contract suite (test_state.py, test_spend.py) runs on a cluster too; what is here is what only a
cluster can show: a tenant's state lives on one node, a node down stops only its tenants, and the
node comes back with what it held.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from redis.crc import key_slot

from gateway.domain import TokenLimits, Usage
from gateway.state import TOKENS_PER_DAY, StateUnavailable
from gateway.state.redis import RedisState
from tests.redis_cluster import RedisCluster
from tests.state.stores import T0, run
from tests.support import REDIS_TIMEOUT_S

TIMEOUT_S = 0.5
T = TypeVar("T")


def tenant_on(cluster: RedisCluster, *, same_node_as: str | None = None, not_on_node_of: str | None = None) -> str:
    """A tenant whose keys live where asked (by where another tenant's keys live)."""
    for n in range(1000):
        tenant = f"team-{n}"
        node = cluster.node_of(f"gw:{{{tenant}}}:x")
        if same_node_as is not None and node is not cluster.node_of(f"gw:{{{same_node_as}}}:x"):
            continue
        if not_on_node_of is not None and node is cluster.node_of(f"gw:{{{not_on_node_of}}}:x"):
            continue
        return tenant
    raise LookupError("no such tenant")


async def once_answered(call: Callable[[], Awaitable[T]], within_s: float = 15.0) -> T:
    """The first answer of `call`, retried while the state is unavailable (a node rejoining)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except StateUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_a_node_down_stops_only_its_tenants_and_comes_back_with_what_it_held(
    fresh_redis_cluster: RedisCluster,
) -> None:
    cluster = fresh_redis_cluster
    a, b = (RedisState(cluster.url, timeout_s=TIMEOUT_S, max_owned_objects=1000, cluster=True) for _ in range(2))
    try:
        for store in (a, b):  # replicas that have run a while: each has learnt the cluster from its node
            await store.ping()
        hit = "team-0"
        spared = tenant_on(cluster, not_on_node_of=hit)
        limits = TokenLimits(per_day=5000)
        assert (await a.reserve("res1", hit, 1000, limits, T0)).ok
        assert (await a.acquire(hit, f"runs:{hit}", "call1", 1, 600)).ok
        await a.bind("res1", run("run_1", T0, tenant=hit))
        assert (await a.reserve("res2", spared, 1000, limits, T0)).ok

        node = cluster.node_of(f"gw:{{{hit}}}:x")
        node.stop()  # killed: no goodbye to the clients
        started = time.monotonic()
        with pytest.raises(StateUnavailable):
            await b.reserve("res3", hit, 1000, limits, T0)
        assert time.monotonic() - started < 2 * TIMEOUT_S + 0.5  # bounded, never a hang
        # The other nodes serve their tenants all along.
        assert (await once_answered(lambda: b.reserve("res4", spared, 1000, limits, T0))).ok
        assert await b.tokens_remaining(spared, limits, T0) == {TOKENS_PER_DAY: 3000}

        cluster.restart(node)  # with its append-only file, like a pod with its volume
        # Back with what it held: the reservation, the lease, the listed run; nothing counted twice.
        assert await once_answered(lambda: b.tokens_remaining(hit, limits, T0)) == {TOKENS_PER_DAY: 4000}
        assert not (await b.acquire(hit, f"runs:{hit}", "call2", 1, 600)).ok
        assert [r.run_id for r in await b.due_runs(T0 + 10, 10)] == ["run_1"]
        assert await b.settle("run_1", hit, "gpt-4o", Usage(100, 200, 300), T0 + 5)
        assert not await a.settle("run_1", hit, "gpt-4o", Usage(100, 200, 300), T0 + 6)
        assert await a.tokens_remaining(hit, limits, T0) == {TOKENS_PER_DAY: 4700}
        assert await a.due_runs(T0 + 10, 10) == []
    finally:
        await a.close()
        await b.close()


async def test_a_tenants_keys_share_one_slot_and_tenants_spread_over_the_nodes(redis_cluster: RedisCluster) -> None:
    store = RedisState(redis_cluster.url, timeout_s=REDIS_TIMEOUT_S, max_owned_objects=1000, cluster=True)
    try:
        tenants = [f"team-{n}" for n in range(12)]
        for tenant in tenants:
            assert (await store.reserve(f"res-{tenant}", tenant, 10, TokenLimits(per_day=100), T0)).ok
            await store.bind(f"res-{tenant}", run(f"run-{tenant}", T0, tenant=tenant))
            assert (await store.acquire(tenant, f"runs:{tenant}", "call1", 5, 60)).ok
        await store.claim("team-0", "thread_1")
        keys = [key for node in redis_cluster.nodes for key in node_keys(node.port)]
        by_tenant: dict[str, set[int]] = {}
        for key in keys:
            tag = key[key.index("{") + 1 : key.index("}")] if "{" in key else None
            if tag in tenants:
                by_tenant.setdefault(tag, set()).add(slot_of(key))
        assert set(by_tenant) == set(tenants)
        assert all(len(slots) == 1 for slots in by_tenant.values())  # one slot per tenant: one script each
        holding = {node.port for node in redis_cluster.nodes if any("{team-" in k for k in node_keys(node.port))}
        assert len(holding) > 1  # and not all on one node
    finally:
        await store.close()


def node_keys(port: int) -> list[str]:
    done = subprocess.run(["redis-cli", "-p", str(port), "--scan"], capture_output=True, text=True, check=True)
    return done.stdout.split()


def slot_of(key: str) -> int:
    return key_slot(key.encode())
