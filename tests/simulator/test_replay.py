"""`X-Simulator-Replay`: the recorded response, byte for byte and piece by piece."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from aiohttp.test_utils import TestClient

from .conftest import HEADERS, parse_events, read_chunks

RECORDINGS = Path(__file__).resolve().parents[2] / "gateway" / "simulator" / "recordings"


def recorded_streams() -> list[Any]:
    """(file stem, request path, request body, recorded pieces) of every SSE response on disk."""
    found = []
    for path in sorted(RECORDINGS.glob("*.json")):
        for entry in json.loads(path.read_text())["Entries"]:
            if isinstance(entry["ResponseBody"], list):
                url = urlsplit(entry["RequestUri"])
                found.append(
                    pytest.param(
                        path.stem,
                        url.path,
                        entry["RequestBody"],
                        entry["ResponseBody"],
                        id=f"{path.stem}{url.path[-20:]}",
                    )
                )
    for path in sorted(RECORDINGS.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            text = interaction["response"]["body"]["string"]
            if isinstance(text, str) and text.startswith("event:"):
                url = urlsplit(interaction["request"]["uri"])
                pieces = [event + "\n\n" for event in text.split("\n\n")[:-1]]
                found.append(
                    pytest.param(path.stem, url.path, json.loads(interaction["request"]["body"]), pieces, id=path.stem)
                )
    return found


@pytest.mark.parametrize(("recording", "path", "body", "pieces"), recorded_streams())
async def test_replay_is_byte_identical_and_chunked_as_recorded(
    http: TestClient, recording: str, path: str, body: dict[str, Any], pieces: list[str]
) -> None:
    response = await http.post(path, json=body, headers={**HEADERS, "X-Simulator-Replay": recording})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"].startswith("req_")
    chunks = await read_chunks(response)
    assert b"".join(chunks) == "".join(pieces).encode()
    assert chunks == [piece.encode() for piece in pieces]


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
