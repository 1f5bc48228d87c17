"""`replicas(n)`: n stores sharing state, on each backend. For memory the same object n times (one
process), for Redis n separate clients of one real redis-server, like n gateway replicas; for Redis
Cluster n clients of a real three-node cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.state import StateStore
from gateway.state.memory import MemoryState
from gateway.state.redis import RedisState
from tests.state.stores import Replicas
from tests.support import REDIS_TIMEOUT_S


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    opened: list[StateStore] = []
    if request.param == "memory":
        memory = MemoryState(max_owned_objects=1000)
        opened.append(memory)

        async def make(n: int) -> list[StateStore]:
            return [memory] * n

    else:
        cluster = request.param == "redis-cluster"
        server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")

        async def make(n: int) -> list[StateStore]:
            stores = [RedisState(server.url, timeout_s=REDIS_TIMEOUT_S, max_owned_objects=1000, cluster=cluster) for _ in range(n)]
            for store in stores:
                await store.ping()  # connected (and the cluster's layout learnt) before a test's clock runs
            opened.extend(stores)
            return list(stores)

    yield make
    for store in opened:
        await store.close()
