"""Every object a tenant creates through the gateway is its own: assistants, files, vector stores,
threads. Another tenant gets 404 as if it did not exist, whether it names the object in a path or
inside a body, and nothing of the attempt reaches the upstream."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import openai
import pytest

from gateway.config import ConfigError, parse_config
from tests.conftest import Gateway
from tests.support import both_protocols

ENV = {"UPSTREAM_KEY": "sk-upstream", "ALICE_KEY": "sk-alice", "BOB_KEY": "sk-bob"}
MESSAGE = {"messages": [{"role": "user", "content": "hi"}]}


def two_teams(**bob: Any) -> dict[str, Any]:
    return {
        "env": ENV,
        "upstream": {"api_key": "${UPSTREAM_KEY}"},
        "tenants": {"alice": {"keys": ["${ALICE_KEY}"]}, "bob": {"keys": ["${BOB_KEY}"], **bob}},
    }


@pytest.fixture
async def teams(make_gateway) -> Gateway:
    return await make_gateway(**two_teams())


def upstream_calls(simulator_state: Any) -> list[tuple[str, str]]:
    return [(request.method, request.path) for request in simulator_state.requests]


async def refused(simulator_state: Any, attempt: Any, message: str) -> None:
    """`attempt` answers 404 with `message`, and nothing of it reaches the upstream."""
    before = len(simulator_state.requests)
    with pytest.raises(openai.NotFoundError) as caught:
        await attempt
    assert caught.value.body["message"] == message
    assert upstream_calls(simulator_state)[before:] == []


async def test_another_tenants_assistant_is_404_everywhere(teams, simulator_state):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    mine = await alice.beta.assistants.create(model="gpt-4o", instructions="be kind")
    message = f"No assistant found with id '{mine.id}'."
    for attempt in (
        bob.beta.assistants.retrieve(mine.id),
        bob.beta.assistants.update(mine.id, instructions="hijacked"),
        bob.beta.assistants.delete(mine.id),
        bob.beta.threads.create_and_run(assistant_id=mine.id, thread=MESSAGE),
    ):
        await refused(simulator_state, attempt, message)
    thread = await bob.beta.threads.create()
    await refused(simulator_state, bob.beta.threads.runs.create(thread.id, assistant_id=mine.id), message)
    assert (await alice.beta.assistants.retrieve(mine.id)).instructions == "be kind"


@both_protocols
async def test_another_tenants_file_is_404_in_paths_and_bodies(teams, simulator_state):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    secret = await alice.files.create(file=("notes.txt", io.BytesIO(b"alice's secret")), purpose="assistants")
    message = f"No file found with id '{secret.id}'."
    thread = await bob.beta.threads.create()
    attachment = [{"file_id": secret.id, "tools": [{"type": "file_search"}]}]
    for attempt in (
        bob.files.retrieve(secret.id),
        bob.files.content(secret.id),
        bob.files.delete(secret.id),
        bob.beta.threads.messages.create(thread.id, role="user", content="read it", attachments=attachment),
        bob.beta.threads.create(messages=[{"role": "user", "content": "read it", "attachments": attachment}]),
        bob.vector_stores.create(file_ids=[secret.id]),
    ):
        await refused(simulator_state, attempt, message)
    assert (await alice.files.content(secret.id)).content == b"alice's secret"


@both_protocols
async def test_another_tenants_vector_store_is_404_in_paths_and_run_bodies(teams, simulator_state):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    store = await alice.vector_stores.create(name="alice's")
    message = f"No vector store found with id '{store.id}'."
    assistant = await bob.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    resources = {"file_search": {"vector_store_ids": [store.id]}}
    for attempt in (
        bob.vector_stores.retrieve(store.id),
        bob.vector_stores.delete(store.id),
        bob.vector_stores.files.list(store.id),
        bob.beta.threads.create_and_run(assistant_id=assistant.id, thread=MESSAGE, tool_resources=resources),
        bob.beta.threads.create(tool_resources=resources),
    ):
        await refused(simulator_state, attempt, message)
    assert (await alice.vector_stores.retrieve(store.id)).name == "alice's"


async def test_an_assistant_made_of_another_tenants_store_is_refused(teams, simulator_state):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    store = await alice.vector_stores.create(name="alice's")
    resources = {"file_search": {"vector_store_ids": [store.id]}}
    attempt = bob.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}], tool_resources=resources)
    await refused(simulator_state, attempt, f"No vector store found with id '{store.id}'.")


@both_protocols
async def test_own_objects_referenced_in_bodies_pass(teams):
    bob = teams.async_client(api_key="sk-bob")
    notes = await bob.files.create(file=("notes.txt", io.BytesIO(b"bob's")), purpose="assistants")
    store = await bob.vector_stores.create(file_ids=[notes.id])
    thread = await bob.beta.threads.create(tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    attachment = [{"file_id": notes.id, "tools": [{"type": "file_search"}]}]
    created = await bob.beta.threads.messages.create(thread.id, role="user", content="read", attachments=attachment)
    assert created.thread_id == thread.id
    # A metadata value is the caller's own text, never an object reference.
    assert (await bob.beta.threads.create(metadata={"file_id": "file-of-nobody"})).metadata == {
        "file_id": "file-of-nobody"
    }


@both_protocols
async def test_objects_the_gateway_never_saw_are_denied_by_default(make_gateway, simulator):
    config = two_teams()
    config["env"]["CAROL_KEY"] = "sk-carol"
    config["tenants"]["carol"] = {"keys": ["${CAROL_KEY}"], "unknown_objects": "allow"}
    gateway = await make_gateway(**config)
    headers = {"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session:
        created = await session.post(simulator.make_url("/v1/vector_stores"), json={"name": "x"}, headers=headers)
        store_id = (await created.json())["id"]
    with pytest.raises(openai.NotFoundError):  # bob: the default, deny
        await gateway.async_client(api_key="sk-bob").vector_stores.retrieve(store_id)
    assert (await gateway.async_client(api_key="sk-carol").vector_stores.retrieve(store_id)).id == store_id


async def test_a_forgotten_owner_is_denied_even_where_unknown_objects_are_allowed(make_gateway):
    gateway = await make_gateway(**two_teams(unknown_objects="allow"), state={"max_owned_objects": 3})
    alice, bob = gateway.async_client(api_key="sk-alice"), gateway.async_client(api_key="sk-bob")
    thread = await alice.beta.threads.create()
    for _ in range(4):  # push alice's claim out of the bounded memory
        await bob.beta.threads.create()
    with pytest.raises(openai.NotFoundError):
        await bob.beta.threads.messages.list(thread.id)


async def test_objects_declared_in_a_tenants_config_are_its_own_even_after_forgetting(make_gateway, simulator):
    headers = {"Authorization": "Bearer sk-any", "OpenAI-Beta": "assistants=v2"}
    async with aiohttp.ClientSession() as session:  # made before the gateway, behind its back
        created = await session.post(simulator.make_url("/v1/assistants"), json={"model": "gpt-4o"}, headers=headers)
        assistant = (await created.json())["id"]
    gateway = await make_gateway(**two_teams(unknown_objects="allow", owns=[assistant]), state={"max_owned_objects": 3})
    alice, bob = gateway.async_client(api_key="sk-alice"), gateway.async_client(api_key="sk-bob")
    for _ in range(4):  # claims dropped from the bounded memory: unknown objects now read as forgotten
        await bob.beta.threads.create()
    assert (await bob.beta.threads.create_and_run(assistant_id=assistant)).assistant_id == assistant
    assert assistant in [a.id async for a in bob.beta.assistants.list()]
    with pytest.raises(openai.NotFoundError):
        await alice.beta.assistants.retrieve(assistant)


def test_an_object_declared_by_two_tenants_is_a_config_error():
    raw = two_teams(owns=["asst_1"])
    raw["tenants"]["alice"]["owns"] = ["asst_1"]
    with pytest.raises(ConfigError, match="asst_1 is already tenant alice's"):
        parse_config(raw, env=raw.pop("env"))


async def test_creating_pass_through_calls_count_against_the_request_rate(make_gateway, simulator_state):
    gateway = await make_gateway(**two_teams(), limits={"tenants": {"bob": {"requests_per_minute": 3}}})
    bob = gateway.async_client(api_key="sk-bob", max_retries=0)
    threads = [await bob.beta.threads.create() for _ in range(3)]
    before = len(simulator_state.requests)
    with pytest.raises(openai.RateLimitError):
        await bob.beta.threads.create()
    assert upstream_calls(simulator_state)[before:] == []
    assert (await bob.beta.threads.retrieve(threads[0].id)).id == threads[0].id  # reads are not counted


async def interleaved(create_for_alice: Any, create_for_bob: Any, rounds: int) -> list[str]:
    """Alice's ids, oldest first, with two of bob's after each of hers: the upstream's list mixes them."""
    mine = []
    for _ in range(rounds):
        mine.append((await create_for_alice()).id)
        await create_for_bob()
        await create_for_bob()
    return mine


async def pages_of(listing: Any) -> list[Any]:
    return [page async for page in listing.iter_pages()]


@both_protocols
async def test_lists_show_only_the_callers_objects_with_the_list_contract_intact(teams):
    """45 of alice's vector stores among 90 of bob's: more than one upstream page of 100, so the
    gateway walks several of them for one of alice's pages; every cursor works as the API's does."""
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    mine = await interleaved(lambda: alice.vector_stores.create(), lambda: bob.vector_stores.create(), 45)
    newest_first = mine[::-1]

    pages = await pages_of(await alice.vector_stores.list(limit=20))
    assert [[s.id for s in page.data] for page in pages] == [newest_first[:20], newest_first[20:40], newest_first[40:]]
    assert [page.has_more for page in pages] == [True, True, False]
    assert (pages[0].first_id, pages[0].last_id) == (newest_first[0], newest_first[19])

    oldest_first = await alice.vector_stores.list(limit=10, order="asc", after=mine[4])
    assert [s.id for s in oldest_first.data] == mine[5:15] and oldest_first.has_more
    before = await alice.vector_stores.list(limit=10, order="asc", before=mine[30])
    assert [s.id for s in before.data] == mine[20:30] and before.has_more
    first = await alice.vector_stores.list(limit=10, order="asc", before=mine[3])
    assert [s.id for s in first.data] == mine[:3] and not first.has_more

    bobs = [s.id async for s in bob.vector_stores.list(limit=100)]
    assert len(bobs) == 90 and not set(bobs) & set(mine)


async def test_assistant_and_file_lists_are_the_callers_own(teams):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    assistants = await interleaved(
        lambda: alice.beta.assistants.create(model="gpt-4o"), lambda: bob.beta.assistants.create(model="gpt-4o"), 36
    )
    assert [a.id async for a in alice.beta.assistants.list(limit=15, order="asc")] == assistants

    def upload(owner: str) -> Any:
        client = alice if owner == "alice" else bob
        return lambda: client.files.create(file=(f"{owner}.txt", io.BytesIO(owner.encode())), purpose="assistants")

    files = await interleaved(upload("alice"), upload("bob"), 36)
    assert [f.id async for f in alice.files.list(limit=15, order="asc")] == files
    assert [f.id async for f in alice.files.list(purpose="batch")] == []  # other filters still apply


async def test_a_threads_messages_page_like_the_apis(teams):
    alice, bob = teams.async_client(api_key="sk-alice"), teams.async_client(api_key="sk-bob")
    thread = await alice.beta.threads.create(messages=[{"role": "user", "content": f"m{n}"} for n in range(7)])
    listed = [m.content[0].text.value async for m in alice.beta.threads.messages.list(thread.id, limit=3, order="asc")]
    assert listed == [f"m{n}" for n in range(7)]
    with pytest.raises(openai.NotFoundError):
        await bob.beta.threads.messages.list(thread.id)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "order=sideways"])
async def test_a_bad_list_query_is_a_400_naming_it(teams, query):
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            f"{teams.base_url}/vector_stores?{query}", headers={"Authorization": "Bearer sk-bob"}
        )
        error = (await answer.json())["error"]
    assert answer.status == 400
    assert (error["type"], error["param"]) == ("invalid_request_error", query.split("=")[0])
