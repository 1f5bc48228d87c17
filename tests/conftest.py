"""Shared fixtures: the built-in simulator as upstream, a gateway in front of it, SDK clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.app import build_app
from gateway.config import Config, load_config, parse_config
from gateway.domain import RunRecord
from gateway.http.server import GatewayRunner
from gateway.http.sse import SSEEvent
from gateway.simulator import SIMULATOR_STATE, SimulatorSettings, build_simulator_app
from tests.support import REDIS_TIMEOUT_S
from tests.support import TEAM_KEY as TEAM_KEY  # re-exported: tests that import these from conftest
from tests.support import limited_tenant as limited_tenant

# `redis_server`: a real redis-server on a free port; `redis_cluster`: a real three-node Redis Cluster.
pytest_plugins = ["tests.redis_server", "tests.redis_cluster"]

API_KEY = "sk-test-caller"


class RunCollector:
    """An observer that keeps every finished run record, for tests to assert on."""

    def __init__(self) -> None:
        self.finished: list[RunRecord] = []
        self.done = asyncio.Event()

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        return None

    def run_finished(self, record: RunRecord) -> None:
        self.finished.append(record)
        self.done.set()

    async def wait(self, count: int = 1, timeout: float = 5.0) -> list[RunRecord]:
        async def enough() -> None:
            while len(self.finished) < count:
                self.done.clear()
                await self.done.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.finished


class Gateway:
    """A running gateway: its server, config, collected runs, and SDK clients pointed at it."""

    def __init__(self, server: TestServer, config: Config, runs: RunCollector) -> None:
        self.server = server
        self.config = config
        self.runs = runs
        self.base_url = str(server.make_url("/v1"))

    @property
    def app(self) -> web.Application:
        return self.server.app  # type: ignore[return-value]

    def async_client(self, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        return openai.AsyncOpenAI(base_url=self.base_url, **kwargs)

    def sync_client(self, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.base_url, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def sdk_imported() -> None:
    """The SDK imports its resources on first use (~0.7 s here): done once up front, so that no test's
    event loop (which the gateway shares) stalls on it while a Redis call is timing out."""
    client = openai.OpenAI(api_key="sk-unused", base_url="http://127.0.0.1:9/v1")
    _ = (client.beta.threads.runs.steps, client.beta.threads.messages, client.beta.assistants, client.files,
         client.vector_stores, client.responses, client.conversations)  # fmt: skip
    client.close()


class GatewayTestServer(TestServer):
    """A test server on the runner `gateway serve` uses (aiohttp_server's is aiohttp's own)."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return GatewayRunner(self.app, **kwargs)


GatewayServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def gateway_server() -> AsyncIterator[GatewayServer]:
    """Serve a gateway app as `gateway serve` does: `await gateway_server(app, **server_options)`."""
    servers: list[TestServer] = []

    async def start(app: web.Application, **options: Any) -> TestServer:
        server = GatewayTestServer(app)
        await server.start_server(**options)
        servers.append(server)
        return server

    yield start
    while servers:
        await servers.pop().close()


@pytest.fixture
def simulator_settings() -> SimulatorSettings:
    return SimulatorSettings(poll_after_ms=1, hang_check_interval_s=0.01)


@pytest.fixture
async def simulator(
    aiohttp_server: Callable[..., Awaitable[TestServer]], simulator_settings: SimulatorSettings
) -> TestServer:
    return await aiohttp_server(build_simulator_app(simulator_settings))


@pytest.fixture
def simulator_state(simulator: TestServer) -> Any:
    return simulator.app[SIMULATOR_STATE]  # type: ignore[index]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `state:` section of a gateway, once for each backend (Redis: a real redis-server; Redis
    Cluster: three real ones)."""
    if request.param == "memory":
        return {"backend": "memory"}
    if request.param == "redis":
        return {"backend": "redis", "url": request.getfixturevalue("redis_server").url, "timeout_s": REDIS_TIMEOUT_S}
    return {"backend": "redis", "cluster": True, "url": request.getfixturevalue("redis_cluster").url, "timeout_s": REDIS_TIMEOUT_S}


@pytest.fixture
def protocol() -> str:
    """The upstream protocol gateways are started with; a module runs in both modes with
    `pytestmark = both_protocols` (tests.support), the same tests against either upstream."""
    return "assistants"


@pytest.fixture
def make_gateway(
    gateway_server: GatewayServer, simulator: TestServer, protocol: str
) -> Callable[..., Awaitable[Gateway]]:
    """Start a gateway on the simulator; `raw` sections are merged into the default config."""

    async def start(
        upstream_url: str | None = None,
        env: dict[str, str] | None = None,
        config_file: Path | None = None,
        span_exporter: SpanExporter | None = None,
        **raw: Any,
    ) -> Gateway:
        """A gateway from `raw` sections, or from a YAML `config_file` (which it then reloads from);
        its spans go to `span_exporter` if given."""
        upstream = {"base_url": upstream_url or str(simulator.make_url("/v1")), "protocol": protocol, **raw.pop("upstream", {})}
        if config_file is not None:
            config = load_config(config_file, env=env)
        else:
            raw.setdefault("audit", {"enabled": False})  # tests that audit say so; the rest keep stdout quiet
            config = parse_config({"upstream": upstream, **raw}, env=env or {})
        runs = RunCollector()
        server = await gateway_server(build_app(config, config_path=config_file, observers=[runs], span_exporter=span_exporter))
        return Gateway(server, config, runs)

    return start


@pytest.fixture
async def gateway(make_gateway: Callable[..., Awaitable[Gateway]]) -> AsyncIterator[Gateway]:
    yield await make_gateway()
