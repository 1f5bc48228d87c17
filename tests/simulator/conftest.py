"""Fixtures: raw and SDK clients on the simulator (served by the root conftest), and SSE helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

HEADERS = {"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"}


@pytest.fixture
async def http(aiohttp_client: Any, simulator: TestServer) -> TestClient:
    return await aiohttp_client(simulator)


@pytest.fixture
def base_url(simulator: TestServer) -> str:
    return str(simulator.make_url("/v1"))


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
