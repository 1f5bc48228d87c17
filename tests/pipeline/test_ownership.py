"""One tenant never reaches another's threads and runs: 404, as if they did not exist."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from gateway.state import FORGOTTEN
from gateway.state.memory import MemoryState
from tests.conftest import Gateway
from tests.support import both_protocols

ENV = {"UPSTREAM_KEY": "sk-upstream", "ALICE_KEY": "sk-alice", "BOB_KEY": "sk-bob"}
MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


def two_teams(bob_unknown_threads: str = "allow", alice_unknown_threads: str = "deny") -> dict[str, Any]:
    return {
        "env": ENV,
        "upstream": {"api_key": "${UPSTREAM_KEY}"},
        "tenants": {
            "alice": {"keys": ["${ALICE_KEY}"], "unknown_objects": alice_unknown_threads},
            "bob": {"keys": ["${BOB_KEY}"], "unknown_objects": bob_unknown_threads},
        },
    }


@pytest.fixture
async def teams(make_gateway) -> Gateway:
    return await make_gateway(**two_teams())


@both_protocols
async def test_another_tenants_thread_and_runs_are_404_the_owner_still_reaches_them(teams):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    assistant = await alice.beta.assistants.create(model="gpt-4o")
    run = await alice.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=MESSAGE, poll_interval_ms=5)
    thread_id = run.thread_id
    assert (await alice.beta.threads.retrieve(thread_id)).id == thread_id
    assert (await alice.beta.threads.runs.retrieve(run.id, thread_id=thread_id)).status == "completed"
    attempts = [
        bob.beta.threads.retrieve(thread_id),
        bob.beta.threads.messages.list(thread_id),
        bob.beta.threads.runs.retrieve(run.id, thread_id=thread_id),
        bob.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant.id),
        bob.beta.threads.runs.submit_tool_outputs(run.id, thread_id=thread_id, tool_outputs=[]),
        bob.beta.threads.delete(thread_id),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as caught:
            await attempt
        assert caught.value.body["message"] == f"No thread found with id '{thread_id}'."
    assert (await alice.beta.threads.messages.list(thread_id)).data  # nothing was deleted


@both_protocols
async def test_threads_created_directly_are_claimed(teams):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    thread = await alice.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await bob.beta.threads.retrieve(thread.id)
    assert (await alice.beta.threads.retrieve(thread.id)).id == thread.id


@both_protocols
async def test_ownership_is_claimed_while_the_stream_is_still_open(teams):
    alice = teams.async_client(api_key="sk-alice")
    assistant = await alice.beta.assistants.create(model="gpt-4o")
    slow = {"X-Simulator-Event-Delay-Ms": "40"}
    stream = await alice.beta.threads.create_and_run(assistant_id=assistant.id, stream=True, extra_headers=slow)
    first = await stream.__anext__()
    assert first.event == "thread.created"
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            teams.server.make_url(f"/v1/threads/{first.data.id}"),
            headers={"Authorization": "Bearer sk-bob", "OpenAI-Beta": "assistants=v2"},
        )
        assert response.status == 404
    await stream.close()


@pytest.mark.parametrize(("policy", "status"), [("allow", 200), ("deny", 404)])
async def test_threads_the_gateway_never_saw(make_gateway, simulator, policy, status):
    gateway = await make_gateway(**two_teams(bob_unknown_threads=policy))
    headers = {"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session:
        created = await session.post(simulator.make_url("/v1/threads"), json={}, headers=headers)  # behind its back
        thread_id = (await created.json())["id"]
        bob = {**headers, "Authorization": "Bearer sk-bob"}
        response = await session.get(gateway.server.make_url(f"/v1/threads/{thread_id}"), headers=bob)
        assert response.status == status


async def test_first_claim_wins_and_memory_is_bounded():
    store = MemoryState(max_owned_objects=2)
    await store.claim("alice", "thread_1", "run_1")
    await store.claim("bob", "thread_1")
    assert (await store.owners(["thread_1"]))[0] == "alice"
    await store.claim("bob", "thread_2")
    await store.claim("bob", "thread_3")
    assert (await store.owners(["thread_1"]))[0] == FORGOTTEN  # the oldest was dropped: no one's, not anyone's
    assert await store.owners(["thread_2", "thread_3"]) == ["bob", "bob"]


async def test_a_run_on_a_thread_nobody_claimed_does_not_take_it(make_gateway, simulator):
    gateway = await make_gateway(**two_teams(bob_unknown_threads="allow", alice_unknown_threads="allow"))
    direct = openai.AsyncOpenAI(base_url=str(simulator.make_url("/v1")), api_key="sk-any")
    thread = await direct.beta.threads.create()  # behind the gateway's back: nobody's
    assistant = await direct.beta.assistants.create(model="gpt-4o")
    bob, alice = gateway.async_client(api_key="sk-bob"), gateway.async_client(api_key="sk-alice")
    run = await bob.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    assert (await bob.beta.threads.runs.retrieve(run.id, thread_id=thread.id)).id == run.id  # the run is bob's
    assert (await alice.beta.threads.retrieve(thread.id)).id == thread.id  # the thread did not become bob's
