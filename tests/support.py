"""Helpers every test package shares: a free port, the one-tenant config, and `/metrics` read through
the Prometheus text parser (never by hand)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gateway.keys import STATE
from gateway.ops.reconcile import reconcile_once

if TYPE_CHECKING:
    from tests.conftest import Gateway

TEAM_KEY = "sk-team"
UPSTREAM_KEY = "sk-upstream"
# Both token fields capped at 1000, so each run reserves 2000 tokens.
TOKEN_CAPS: dict[str, Any] = {"tokens": {"max_prompt_tokens": {"max": 1000}, "max_completion_tokens": {"max": 1000}}}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
T = TypeVar("T")

# The same tests against either upstream protocol (the `protocol` fixture `make_gateway` reads):
# forwarding the Assistants API, and serving it on the Responses API. As a test's or a module's mark.
both_protocols = pytest.mark.parametrize("protocol", ["assistants", "responses"])

# Redis's timeout where a test is not about timeouts: a second was once too short to connect to a
# local redis-server on a loaded two-core CI machine. Tests of a slow or frozen Redis set their own.
REDIS_TIMEOUT_S = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (yet: it can be taken before the caller binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def team_tenant(
    policy: dict[str, Any] | None = None, *, limits: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """`make_gateway` arguments for one tenant `team` (key sk-team, upstream key sk-upstream) under the
    policy `team` (`policy`, empty if none), with `limits` if given; `extra` sections are added. The
    tenant may use objects made on the simulator behind the gateway's back (`unknown_objects: allow`)."""
    return {
        "env": {"UPSTREAM_KEY": UPSTREAM_KEY, "TEAM_KEY": TEAM_KEY},
        "upstream": {"api_key": "${UPSTREAM_KEY}"},
        "tenants": {"team": {"keys": ["${TEAM_KEY}"], "policy": "team", "unknown_objects": "allow"}},
        "policies": {"team": policy if policy is not None else {}},
        **({"limits": {"tenants": {"team": limits}}} if limits is not None else {}),
        **extra,
    }


def limited_tenant(limits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """`make_gateway` arguments for one tenant `team` (key sk-team) with `limits`; its policy caps both
    token fields at 1000, so each run reserves 2000 tokens."""
    return team_tenant(TOKEN_CAPS, limits=limits, **extra)


def series(text: str, name: str, **labels: str) -> list[Sample]:
    """The samples of a `/metrics` text named `name` whose labels include `labels`."""
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def parse_metrics(text: str) -> Samples:
    """Every sample of a `/metrics` text, by (name, exact label set)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(gateway: Gateway) -> Samples:
    """One GET /metrics of a test gateway, parsed."""
    async with aiohttp.ClientSession() as session:
        text = await (await session.get(gateway.server.make_url("/metrics"))).text()
    return parse_metrics(text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample `name` with exactly `labels`; 0.0 when it is not exported (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def upstream_usage(simulator_state: Any, thread_id: str, run_id: str) -> int:
    """The total tokens the simulator reported for a run: the Assistants run's own, or, behind the
    facade, the sum of the responses in the thread's conversation (a thread per run, tool rounds summed)."""
    if thread_id in simulator_state.threads:
        return int(simulator_state.threads[thread_id].runs[run_id].obj["usage"]["total_tokens"])
    responses = [r.obj for r in simulator_state.responses_store.responses.values()]
    return sum(r["usage"]["total_tokens"] for r in responses if (r.get("conversation") or {}).get("id") == thread_id)


class SteppedClock:
    """A monotonic clock that moves only when a test says so: timing rules are tested without sleeping."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def read_until(read: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout_s: float = 5.0) -> T:
    """`read()` again until `until` holds of what it reads, or `timeout_s` passed: the last reading.
    A run is settled (counted, its SERVER span ended) just after its client has the answer that ends
    it (README), so a read sent the instant the answer is whole may come first."""
    deadline = time.monotonic() + timeout_s
    while True:
        reading = await read()
        if until(reading) or time.monotonic() > deadline:
            return reading
        await asyncio.sleep(0.01)


async def listed_for_reconciling(gateway: Gateway, run_id: str, timeout_s: float = 5.0) -> None:
    """Until `run_id` is on the reconciler's list. A call whose client left is recorded as it ends,
    and its run bound (listed) just after, as its handler unwinds: a test that reconciles at once
    could find nothing yet."""
    state, deadline = gateway.app[STATE], time.monotonic() + timeout_s
    while run_id not in {run.run_id for run in await state.due_runs(time.time() + 86400, 1000)}:
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_id} was never put on the reconciler's list")
        await asyncio.sleep(0.01)


async def reconcile_until_settled(gateway: Gateway, rounds: int = 40) -> None:
    """Run the reconciler as if time passed between its passes, until nothing is pending. The
    gateway's clock is moved on; the upstream's is not, so a background response the simulator is
    still writing out (an abandoned stream with event delays) is given real time between passes."""
    state, later = gateway.app[STATE], time.time()
    for _ in range(rounds):
        later += gateway.config.limits.reconcile_after_s + 1
        await reconcile_once(gateway.app, now=later)
        if not await state.due_runs(later + 3600, 10):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("runs still pending after the reconciler's passes")


async def run_with_tool_outputs(client: Any, assistant_id: str, output: str = "sun") -> tuple[Any, Any]:
    """A streamed run that stops for its function calls, and their outputs streamed back: (paused, final)."""
    async with client.beta.threads.create_and_run_stream(assistant_id=assistant_id) as stream:
        paused = await stream.get_final_run()
    calls = paused.required_action.submit_tool_outputs.tool_calls
    async with client.beta.threads.runs.submit_tool_outputs_stream(
        run_id=paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": c.id, "output": output} for c in calls]
    ) as stream:
        final = await stream.get_final_run()
    return paused, final
