"""`replicas(n)`: n stores sharing state, on each backend. For memory the same object n times (one
process), for Redis n separate clients of one real redis-server, like n gateway replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.state import StateStore
from gateway.state.memory import MemoryState
from gateway.state.redis import RedisState
from tests.state.stores import Replicas


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    opened: list[StateStore] = []
    if request.param == "memory":
        memory = MemoryState(max_owned_objects=1000)
        opened.append(memory)

        async def make(n: int) -> list[StateStore]:
            return [memory] * n

    else:
        server = request.getfixturevalue("redis_server")

        async def make(n: int) -> list[StateStore]:
            stores: list[StateStore] = [RedisState(server.url, timeout_s=1.0, max_owned_objects=1000) for _ in range(n)]
            opened.extend(stores)
            return stores

    yield make
    for store in opened:
        await store.close()
