"""Fixtures for the hostile-input and fuzz suites: a gateway with the whole pipeline on (see
`tests.fuzz.support` for the config and what every answer must be)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import build_app
from gateway.cli.serve import SERVER_OPTIONS
from gateway.config import parse_config
from tests.conftest import Gateway, GatewayServer, RunCollector
from tests.fuzz.support import CASES, ENV, DiscardSpans, full_pipeline, team_headers


@pytest.fixture
def make_full_gateway(
    gateway_server: GatewayServer, simulator: TestServer, tmp_path: Path
) -> Callable[..., Awaitable[Gateway]]:
    """A gateway with every stage on, served with the production server options."""

    async def start(server_options: dict[str, Any] | None = None, **overrides: Any) -> Gateway:
        raw = full_pipeline(tmp_path)
        for section, values in overrides.items():
            raw[section] = {**raw.get(section, {}), **values}
        raw["upstream"]["base_url"] = str(simulator.make_url("/v1"))
        config = parse_config(raw, env=ENV)
        runs = RunCollector()
        app = build_app(config, observers=[runs], span_exporter=DiscardSpans())
        server = await gateway_server(app, **{**SERVER_OPTIONS, **(server_options or {})})
        return Gateway(server, config, runs)

    return start


@pytest.fixture
async def full_gateway(make_full_gateway: Callable[..., Awaitable[Gateway]]) -> Gateway:
    return await make_full_gateway()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:
        yield client


@pytest.fixture
async def assistant_id(full_gateway: Gateway, session: aiohttp.ClientSession) -> str:
    """An assistant the simulator knows, so valid bodies reach a real run."""
    async with session.post(
        full_gateway.server.make_url("/v1/assistants"), json={"model": "gpt-4o"}, headers=team_headers()
    ) as response:
        assert response.status == 200
        return str((await response.json())["id"])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CASES:
        per_test = ", ".join(f"{test} {n}" for test, n in CASES.most_common())
        terminalreporter.write_line(f"fuzz: {sum(CASES.values())} generated cases ({per_test})")
