"""The API surface over raw HTTP: credentials, errors, headers, lists, run lifecycle edges."""

from __future__ import annotations

from typing import Any

from aiohttp import FormData, web
from aiohttp.test_utils import TestClient

from gateway.simulator import SIMULATOR_STATE, SimulatorSettings, build_simulator_app

from .conftest import HEADERS, create_assistant, parse_events


async def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_missing_or_empty_credentials_are_401(http: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        error = await error_of(await http.get("/v1/files", headers=headers), 401)
        assert error["message"].startswith("You didn't provide an API key.")
        assert error["type"] == "invalid_request_error"


async def test_assistants_endpoints_need_the_beta_header(http: TestClient) -> None:
    bearer = {"Authorization": "Bearer sk-test"}
    for path in ("/v1/assistants", "/v1/threads/thread_x"):
        error = await error_of(await http.get(path, headers=bearer), 400)
        assert error["message"].startswith("You must provide the 'OpenAI-Beta' header")
        assert error["code"] == "invalid_beta"
    assert (await http.get("/v1/files", headers=bearer)).status == 200  # not an Assistants endpoint


async def test_unknown_ids_and_routes_are_404(http: TestClient) -> None:
    error = await error_of(await http.get("/v1/threads/thread_x", headers=HEADERS), 404)
    assert error["message"] == "No thread found with id 'thread_x'."
    error = await error_of(await http.post("/v1/threads/runs", json={"assistant_id": "asst_x"}, headers=HEADERS), 404)
    assert error["message"] == "No assistant found with id 'asst_x'."
    thread = await (await http.post("/v1/threads", json={}, headers=HEADERS)).json()
    error = await error_of(await http.get(f"/v1/threads/{thread['id']}/runs/run_x", headers=HEADERS), 404)
    assert error["message"] == "No run found with id 'run_x'."
    error = await error_of(await http.get("/v1/files/file-x", headers=HEADERS), 404)
    assert error["message"] == "No such File object: file-x"
    error = await error_of(await http.get("/v1/nowhere", headers=HEADERS), 404)
    assert error["message"] == "Invalid URL (GET /v1/nowhere)"


async def test_bad_bodies_are_400(http: TestClient) -> None:
    error = await error_of(await http.post("/v1/assistants", data=b"{nope", headers=HEADERS), 400)
    assert error["message"].startswith("We could not parse the JSON body")
    error = await error_of(await http.post("/v1/assistants", json={}, headers=HEADERS), 400)
    assert (error["param"], error["code"]) == ("model", "missing_required_parameter")
    error = await error_of(
        await http.post("/v1/assistants", json={"model": "m", "tools": [{"type": "x"}]}, headers=HEADERS), 400
    )
    assert error["param"] == "tools[0].type"


async def test_responses_carry_openai_headers(http: TestClient) -> None:
    response = await http.post("/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_") and len(response.headers["x-request-id"]) == 36
    assert response.headers["openai-version"] == "2020-10-01"
    assert int(response.headers["openai-processing-ms"]) >= 0
    assistant = await response.json()
    assert assistant["id"].startswith("asst_") and len(assistant["id"]) == 29


async def test_requests_are_recorded_as_received(http: TestClient, simulator_state: Any) -> None:
    await http.post("/v1/threads?x=1", data=b'{"metadata": {}}', headers={**HEADERS, "X-Custom": "yes"})
    [request] = simulator_state.requests
    assert (request.method, request.path, request.query_string) == ("POST", "/v1/threads", "x=1")
    assert request.headers["x-custom"] == "yes" and request.body == b'{"metadata": {}}'


async def test_lists_page_like_openai(http: TestClient) -> None:
    ids = [(await create_assistant(http, name=str(index)))["id"] for index in range(5)]
    first = await (await http.get("/v1/assistants?limit=2&order=asc", headers=HEADERS)).json()
    assert first["object"] == "list" and [item["id"] for item in first["data"]] == ids[:2]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[0], ids[1], True)
    after = await (await http.get(f"/v1/assistants?limit=2&order=asc&after={ids[1]}", headers=HEADERS)).json()
    assert [item["id"] for item in after["data"]] == ids[2:4]
    newest = await (await http.get("/v1/assistants", headers=HEADERS)).json()
    assert [item["id"] for item in newest["data"]] == ids[::-1] and not newest["has_more"]
    before = await (await http.get(f"/v1/assistants?limit=2&order=asc&before={ids[4]}", headers=HEADERS)).json()
    assert [item["id"] for item in before["data"]] == ids[2:4] and before["has_more"]
    assert (await http.get("/v1/assistants?limit=0", headers=HEADERS)).status == 400


async def test_one_active_run_per_thread(http: TestClient) -> None:
    plain = await create_assistant(http)
    tooled = await create_assistant(http, tools=[{"type": "function", "function": {"name": "f"}}])
    thread = await (await http.post("/v1/threads", json={}, headers=HEADERS)).json()
    runs = f"/v1/threads/{thread['id']}/runs"
    queued = await (await http.post(runs, json={"assistant_id": plain["id"]}, headers=HEADERS)).json()
    assert queued["status"] == "queued"
    # Real runs finish without being polled: the queued one is done by the time the next one starts.
    paused = await (await http.post(runs, json={"assistant_id": tooled["id"]}, headers=HEADERS)).json()
    for _ in range(2):  # queued -> in_progress -> requires_action
        polled = await (await http.get(f"{runs}/{paused['id']}", headers=HEADERS)).json()
    assert polled["status"] == "requires_action"
    error = await error_of(await http.post(runs, json={"assistant_id": plain["id"]}, headers=HEADERS), 400)
    assert error["message"] == f"Thread {thread['id']} already has an active run {paused['id']}."
    message = {"role": "user", "content": "more"}
    error = await error_of(await http.post(f"/v1/threads/{thread['id']}/messages", json=message, headers=HEADERS), 400)
    assert error["message"].startswith("Can't add messages to")


async def test_cancel_and_update_a_run(http: TestClient) -> None:
    assistant = await create_assistant(http)
    run = await (await http.post("/v1/threads/runs", json={"assistant_id": assistant["id"]}, headers=HEADERS)).json()
    path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}"
    updated = await (await http.post(path, json={"metadata": {"tag": "x"}}, headers=HEADERS)).json()
    assert updated["metadata"] == {"tag": "x"}
    cancelling = await (await http.post(f"{path}/cancel", headers=HEADERS)).json()
    assert cancelling["status"] == "cancelling"
    cancelled = await (await http.get(path, headers=HEADERS)).json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] and cancelled["metadata"] == {"tag": "x"}
    error = await error_of(await http.post(f"{path}/cancel", headers=HEADERS), 400)
    assert error["message"] == "Cannot cancel run with status 'cancelled'."


async def test_streamed_run_objects_are_retrievable(http: TestClient) -> None:
    assistant = await create_assistant(http)
    body = {
        "assistant_id": assistant["id"],
        "thread": {"messages": [{"role": "user", "content": "hi"}]},
        "stream": True,
    }
    events = dict(parse_events(await (await http.post("/v1/threads/runs", json=body, headers=HEADERS)).read()))
    run, message, step = (
        events["thread.run.completed"],
        events["thread.message.completed"],
        events["thread.run.step.completed"],
    )
    thread = f"/v1/threads/{run['thread_id']}"
    assert await (await http.get(f"{thread}/messages/{message['id']}", headers=HEADERS)).json() == message
    assert await (await http.get(f"{thread}/runs/{run['id']}/steps/{step['id']}", headers=HEADERS)).json() == step
    assert (await (await http.get(f"{thread}/runs", headers=HEADERS)).json())["data"] == [run]
    by_run = await (await http.get(f"{thread}/messages?run_id={run['id']}", headers=HEADERS)).json()
    assert by_run["data"] == [message]


async def test_vector_stores(http: TestClient) -> None:
    form = FormData({"purpose": "assistants"})
    form.add_field("file", b"12345", filename="a.txt")
    uploaded = await (await http.post("/v1/files", data=form, headers=HEADERS)).json()
    store = await (
        await http.post("/v1/vector_stores", json={"name": "s", "file_ids": [uploaded["id"]]}, headers=HEADERS)
    ).json()
    assert store["id"].startswith("vs_") and store["usage_bytes"] == 5 and store["file_counts"]["total"] == 1
    assert (await (await http.get("/v1/vector_stores", headers=HEADERS)).json())["data"] == [store]
    deleted = await (await http.delete(f"/v1/vector_stores/{store['id']}", headers=HEADERS)).json()
    assert deleted == {"id": store["id"], "object": "vector_store.deleted", "deleted": True}


async def test_mounted_under_a_prefix(aiohttp_client: Any) -> None:
    outer = web.Application()
    outer.add_subapp("/openai/", build_simulator_app())
    client = await aiohttp_client(outer)
    response = await client.post("/openai/v1/assistants", json={"model": "gpt-4o"}, headers=HEADERS)
    assert response.status == 200 and response.headers["x-request-id"].startswith("req_")
    no_beta = await client.get("/openai/v1/assistants", headers={"Authorization": "Bearer x"})
    assert no_beta.status == 400


async def test_retention_is_bounded(aiohttp_client: Any) -> None:
    app = build_simulator_app(SimulatorSettings(retain_requests=2, retain_threads=1))
    client = await aiohttp_client(app)
    first = await (await client.post("/v1/threads", json={}, headers=HEADERS)).json()
    second = await (await client.post("/v1/threads", json={}, headers=HEADERS)).json()
    assert (await client.get(f"/v1/threads/{first['id']}", headers=HEADERS)).status == 404
    assert (await client.get(f"/v1/threads/{second['id']}", headers=HEADERS)).status == 200
    assert [request.method for request in app[SIMULATOR_STATE].requests] == ["GET", "GET"]
