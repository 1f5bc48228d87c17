"""Hot reload: a broken file keeps the old config serving; a valid one applies without dropping streams."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import openai
import pytest
import yaml

from tests import support
from tests.conftest import Gateway
from tests.support import both_protocols

ENV = {"UPSTREAM_KEY": "sk-upstream", "TEAM_KEY": "sk-team", "ADMIN_KEY": "sk-admin"}
ADMIN = {"Authorization": "Bearer sk-admin"}


def write_config(path: Path, simulator_url: str, model_rules: dict[str, list[str]]) -> None:
    raw = support.team_tenant({"models": model_rules}, admin={"keys": ["${ADMIN_KEY}"]})
    del raw["env"]  # a config file reads the process environment (the `env` fixture)
    raw["upstream"]["base_url"] = simulator_url
    path.write_text(yaml.safe_dump(raw))


@pytest.fixture
def env(monkeypatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def served(env, tmp_path, simulator, make_gateway) -> tuple[Gateway, Path]:
    path = tmp_path / "gateway.yaml"
    write_config(path, str(simulator.make_url("/v1")), {"allow": ["gpt-4o"]})
    return await make_gateway(config_file=path), path


async def reloads(gateway: Gateway, result: str) -> float:
    return support.value(await support.scrape(gateway), "gateway_config_reloads_total", result=result)


async def admin_reload(gateway: Gateway) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        response = await session.post(gateway.server.make_url("/admin/reload"), headers=ADMIN)
        return response.status, await response.json()


async def run_model(client: openai.AsyncOpenAI, assistant_id: str, model: str) -> str:
    run = await client.beta.threads.create_and_run(assistant_id=assistant_id, model=model)
    return run.status


@both_protocols
async def test_broken_file_keeps_the_old_policy_valid_one_applies_without_dropping_a_stream(served, simulator):
    gateway, path = served
    client = gateway.async_client(api_key="sk-team")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    assert await run_model(client, assistant.id, "gpt-4o") == "queued"

    stream = await client.beta.threads.create_and_run(
        assistant_id=assistant.id, model="gpt-4o", stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "15"}
    )
    events = [(await stream.__anext__()).event]

    path.write_text("policies: {team: {models: {allow: 42}}}\n")
    status, body = await admin_reload(gateway)
    assert status == 400 and body["error"]["code"] == "invalid_config"
    assert "policies.team.models.allow" in body["error"]["message"]
    assert await reloads(gateway, "error") >= 1
    assert await run_model(client, assistant.id, "gpt-4o") == "queued"  # the old policy still serves

    write_config(path, str(simulator.make_url("/v1")), {"deny": ["gpt-4o"]})
    status, body = await admin_reload(gateway)
    assert status == 200 and body["status"] == "reloaded"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await run_model(client, assistant.id, "gpt-4o")
    assert caught.value.body["code"] == "policy_violation"

    events += [event.event async for event in stream]  # the stream begun before the reload runs to its end
    assert events[0] == "thread.created" and events[-1] == "thread.run.completed"


async def test_admin_reload_needs_the_admin_key(served):
    gateway, _path = served
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer sk-team"}):
            response = await session.post(gateway.server.make_url("/admin/reload"), headers=headers)
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_api_key"


async def wait_for_reload(gateway: Gateway, before: float) -> None:
    for _ in range(100):
        if await reloads(gateway, "ok") > before:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no reload happened")


async def test_file_change_reloads(served, simulator):
    gateway, path = served
    before = await reloads(gateway, "ok")
    write_config(path, str(simulator.make_url("/v1")), {"allow": ["gpt-4o", "gpt-4.1*"]})
    await wait_for_reload(gateway, before)


async def test_sighup_reloads(served):
    gateway, _path = served
    before = await reloads(gateway, "ok")
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for_reload(gateway, before)
