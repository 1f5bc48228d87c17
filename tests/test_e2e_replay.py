"""Every recorded stream in ../shared/fixtures arrives at the SDK byte for byte through the gateway."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.conftest import SHARED_STREAMS


def recorded_streams() -> list[Any]:
    """(recording, path, query, request body, exact response body) for every recorded SSE response."""
    found = []
    for path in sorted(SHARED_STREAMS.glob("*.json")):
        for entry in json.loads(path.read_text())["Entries"]:
            if isinstance(entry["ResponseBody"], list):
                url = urlsplit(entry["RequestUri"])
                body = "".join(entry["ResponseBody"]).encode()
                found.append(pytest.param(path.stem, url.path, url.query, entry["RequestBody"], body, id=f"{path.stem}:{url.path[-20:]}"))
    for path in sorted(SHARED_STREAMS.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            text = interaction["response"]["body"]["string"]
            if isinstance(text, str) and text.startswith("event:"):
                url = urlsplit(interaction["request"]["uri"])
                request_body = json.loads(interaction["request"]["body"])
                found.append(pytest.param(path.stem, url.path, url.query, request_body, text.encode(), id=path.stem))
    return found


def test_all_recordings_are_covered():
    assert len(recorded_streams()) == 5


@pytest.mark.parametrize(("recording", "path", "query", "request_body", "expected"), recorded_streams())
async def test_recorded_stream_is_relayed_byte_for_byte(gateway, recording, path, query, request_body, expected):
    client = gateway.async_client()
    replay = {"X-Simulator-Replay": recording}
    parts = path.removeprefix("/v1/").split("/")
    if parts == ["threads", "runs"]:
        call = client.beta.threads.with_streaming_response.create_and_run(**request_body, extra_headers=replay)
    elif parts[-1] == "submit_tool_outputs":
        call = client.beta.threads.runs.with_streaming_response.submit_tool_outputs(
            run_id=parts[3], thread_id=parts[1], **request_body, extra_headers=replay
        )
    else:
        include = parse_qs(query).get("include[]")
        extra = {"include": include} if include else {}
        call = client.beta.threads.runs.with_streaming_response.create(
            thread_id=parts[1], **request_body, **extra, extra_headers=replay
        )
    async with call as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b"".join([chunk async for chunk in response.iter_bytes()])
    assert received == expected
    record = (await gateway.runs.wait())[-1]
    assert record.events == expected.count(b"\n\n")
    assert not record.broken
