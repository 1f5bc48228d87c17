"""Every recorded stream the simulator ships (gateway/simulator/recordings) arrives at the SDK byte for byte
through the gateway. tests/simulator/test_recordings_drift.py keeps them equal to ../shared/fixtures."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from tests.recordings import PACKAGED, RecordedStream, recorded_streams, stream_params


def test_all_packaged_recordings_are_covered():
    assert {s.recording for s in recorded_streams(PACKAGED)} == {p.stem for p in PACKAGED.glob("*.*") if p.suffix != ".txt"}
    assert len(recorded_streams(PACKAGED)) == 5


@pytest.mark.parametrize("stream", stream_params(PACKAGED))
async def test_recorded_stream_is_relayed_byte_for_byte(gateway, stream: RecordedStream):
    client = gateway.async_client()
    replay = {"X-Simulator-Replay": stream.recording}
    parts = stream.path.removeprefix("/v1/").split("/")
    if parts == ["threads", "runs"]:
        call = client.beta.threads.with_streaming_response.create_and_run(**stream.request_body, extra_headers=replay)
    elif parts[-1] == "submit_tool_outputs":
        call = client.beta.threads.runs.with_streaming_response.submit_tool_outputs(
            run_id=parts[3], thread_id=parts[1], **stream.request_body, extra_headers=replay
        )
    else:
        include = parse_qs(stream.query).get("include[]")
        extra = {"include": include} if include else {}
        call = client.beta.threads.runs.with_streaming_response.create(
            thread_id=parts[1], **stream.request_body, **extra, extra_headers=replay
        )
    async with call as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received = b"".join([chunk async for chunk in response.iter_bytes()])
    assert received == stream.body
    record = (await gateway.runs.wait())[-1]
    assert record.events == stream.body.count(b"\n\n")
    assert not record.broken
