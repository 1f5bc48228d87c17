"""`X-Simulator-Replay`: the recorded response, byte for byte and piece by piece."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.recordings import RecordedStream, stream_params

from .conftest import HEADERS, parse_events, read_chunks


@pytest.mark.parametrize("stream", stream_params())
async def test_replay_is_byte_identical_and_chunked_as_recorded(http: TestClient, stream: RecordedStream) -> None:
    replay = {**HEADERS, "X-Simulator-Replay": stream.recording}
    response = await http.post(stream.path, json=stream.request_body, headers=replay)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"].startswith("req_")
    chunks = await read_chunks(response)
    assert b"".join(chunks) == stream.body
    assert chunks == [piece.encode() for piece in stream.pieces]


async def test_replayed_objects_are_registered(http: TestClient, simulator_state: Any) -> None:
    """After replaying the tool-call opening, the recorded run can be polled and resumed."""
    replay = {**HEADERS, "X-Simulator-Replay": "openai-dotnet__StreamingToolCall"}
    opening = parse_events(await (await http.post("/v1/threads/runs", json={"stream": True}, headers=replay)).read())
    run = opening[-2][1]
    assert run["status"] == "requires_action"
    thread_path = f"/v1/threads/{run['thread_id']}"
    assert (await (await http.get(thread_path, headers=HEADERS)).json())["id"] == run["thread_id"]
    polled = await (await http.get(f"{thread_path}/runs/{run['id']}", headers=HEADERS)).json()
    assert polled["status"] == "requires_action"
    call_id = run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    resumed = await http.post(
        f"{thread_path}/runs/{run['id']}/submit_tool_outputs",
        json={"tool_outputs": [{"tool_call_id": call_id, "output": "cold"}], "stream": True},
        headers=HEADERS,
    )
    events = parse_events(await resumed.read())
    assert events[0][1]["step_details"]["tool_calls"][0]["function"]["output"] == "cold"
    assert events[-2][0] == "thread.run.completed" and events[-2][1]["id"] == run["id"]
    messages = await (await http.get(f"{thread_path}/messages", headers=HEADERS)).json()
    assert messages["data"][0]["content"][0]["text"]["value"].startswith("Since it's warm and sunny")
    assert simulator_state.open_streams == 0


async def test_replay_of_a_call_the_recording_lacks_is_refused(http: TestClient) -> None:
    replay = {**HEADERS, "X-Simulator-Replay": "openai-dotnet__StreamingRunWorks"}
    response = await http.post("/v1/threads/runs", json={"stream": True}, headers=replay)
    assert response.status == 400
    assert "holds no create-thread-and-run stream" in (await response.json())["error"]["message"]
    unknown = await http.post("/v1/threads/runs", json={}, headers={**HEADERS, "X-Simulator-Replay": "nope"})
    assert unknown.status == 400
