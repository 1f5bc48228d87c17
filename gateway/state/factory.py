"""Build the configured `StateStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from gateway.state import StateStore
from gateway.state.memory import MemoryState


def open_state(
    backend: Literal["memory", "redis"],
    url: str | None,
    timeout_s: float,
    on_failure: Literal["fail_open", "fail_closed"],
    max_owned_objects: int,
    on_outage: Callable[[str], None] | None = None,
    cluster: bool = False,
) -> StateStore:
    """memory → `MemoryState`; redis → `ResilientState(RedisState, MemoryState)` with `on_failure` as
    its mode. Nothing connects yet: the first call does (and a Redis down at start is an outage like
    any other, not a startup failure)."""
    if backend == "memory":
        return MemoryState(max_owned_objects)
    if backend == "redis":
        if not url:
            raise ValueError("state.url is required when the backend is redis")
        from gateway.state.redis import RedisState
        from gateway.state.resilient import ResilientState

        return ResilientState(
            RedisState(url, timeout_s=timeout_s, max_owned_objects=max_owned_objects, cluster=cluster),
            MemoryState(max_owned_objects),
            on_failure,
            on_outage,
        )
    raise ValueError(f"unknown state backend {backend!r}")
