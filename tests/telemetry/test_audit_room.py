"""Audit backpressure in the gateway: room for one run call's records, and every way a run call can
end gives that room back, so a refusal, an upstream failure or a finished stream never blocks the next."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from gateway.keys import AUDIT_ROOM
from tests.conftest import TEAM_KEY, limited_tenant

CAPS = {"max_prompt_tokens": {"max": 1000}, "max_completion_tokens": {"max": 1000}}


async def test_every_ending_of_a_run_call_gives_its_audit_room_back(make_gateway, tmp_path: Path) -> None:
    audit = {"sink": "file", "path": str(tmp_path / "audit.jsonl"), "queue_size": 2}  # one run call at a time
    policy = {"team": {"tokens": CAPS, "models": {"allow": ["gpt-4o"]}}}
    gateway = await make_gateway(**limited_tenant({"requests_per_minute": 3}, audit=audit, policies=policy))
    room = gateway.app[AUDIT_ROOM]
    client = gateway.async_client(api_key=TEAM_KEY, max_retries=0)
    assistant = await client.beta.assistants.create(model="gpt-4o")  # the first of the minute's 3 requests

    async def within(call, error: type[Exception] | None = None) -> None:  # a leaked permit would hang here
        if error is None:
            await asyncio.wait_for(call, 5)
        else:
            with pytest.raises(error):
                await asyncio.wait_for(call, 5)

    await within(
        client.beta.threads.create_and_run(assistant_id=assistant.id, model="o3"), openai.PermissionDeniedError
    )
    fault = {"X-Simulator-Fault": "http-500"}
    await within(
        client.beta.threads.create_and_run(assistant_id=assistant.id, extra_headers=fault), openai.InternalServerError
    )

    async def streamed() -> None:
        async with client.beta.threads.create_and_run_stream(assistant_id=assistant.id) as stream:
            await stream.until_done()

    await within(streamed())
    await within(client.beta.threads.create_and_run(assistant_id=assistant.id), openai.RateLimitError)

    async def all_back() -> None:
        while room.locked():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(all_back(), 5)
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert len(lines) == 8  # a decision and an outcome for each of the four run calls
