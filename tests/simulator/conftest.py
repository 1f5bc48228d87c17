"""Fixtures: a simulator served on a real socket, raw and SDK clients on it, and SSE helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from gateway.simulator import SIMULATOR_STATE, SimulatorSettings, SimulatorState, build_simulator_app

HEADERS = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}


@pytest.fixture
def settings() -> SimulatorSettings:
    return SimulatorSettings(poll_after_ms=1, hang_check_interval_s=0.01)


@pytest.fixture
async def server(aiohttp_server: Any, settings: SimulatorSettings) -> TestServer:
    return await aiohttp_server(build_simulator_app(settings))


@pytest.fixture
def state(server: TestServer) -> SimulatorState:
    return server.app[SIMULATOR_STATE]


@pytest.fixture
async def http(aiohttp_client: Any, server: TestServer) -> TestClient:
    return await aiohttp_client(server)


@pytest.fixture
def base_url(server: TestServer) -> str:
    return str(server.make_url("/v1"))


@pytest.fixture
async def sdk(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    yield client
    await client.close()


async def create_assistant(http: TestClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/assistants", json={"model": "gpt-4o", **body}, headers=HEADERS)
    assert response.status == 200, await response.text()
    return await response.json()


async def read_chunks(response: ClientResponse) -> list[bytes]:
    """The body split at HTTP chunk boundaries (not at TCP reads)."""
    chunks, current = [], b""
    async for data, end_of_chunk in response.content.iter_chunks():
        current += data
        if end_of_chunk:
            chunks.append(current)
            current = b""
    if current:
        chunks.append(current)
    return chunks


def parse_events(body: bytes) -> list[tuple[str, Any]]:
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = lines["data"]
        events.append((lines["event"], data if data == "[DONE]" else json.loads(data)))
    return events
