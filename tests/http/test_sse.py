from __future__ import annotations

import json

import pytest

from gateway.http.sse import SSEEvent, SSEParser
from tests.recordings import RecordedStream, stream_params


def feed_all(parser: SSEParser, chunks: list[bytes]) -> list[SSEEvent]:
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_whole_events():
    body = b'event: thread.run.created\ndata: {"id":"run_1"}\n\nevent: done\ndata: [DONE]\n\n'
    assert SSEParser().feed(body) == [
        SSEEvent("thread.run.created", '{"id":"run_1"}'),
        SSEEvent("done", "[DONE]"),
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_events_split_anywhere(size):
    body = b'event: a\r\ndata: x\r\n\r\nevent: b\rdata: y\r\r: comment\ndata: z\n\n'
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert feed_all(SSEParser(), chunks) == [SSEEvent("a", "x"), SSEEvent("b", "y"), SSEEvent("message", "z")]


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    events = feed_all(SSEParser(), [b"data: a\r", b"\n\r", b"\n"])
    assert events == [SSEEvent("message", "a")]


def test_multiline_data_ids_and_unknown_fields():
    body = b"id: 7\nretry: 10\nfoo: bar\nevent: e\ndata: one\ndata:two\ndata\n\n"
    assert SSEParser().feed(body) == [SSEEvent("e", "one\ntwo\n", "7")]


def test_event_without_data_is_not_dispatched():
    parser = SSEParser()
    assert parser.feed(b"event: lonely\n\ndata: x\n\n") == [SSEEvent("message", "x")]


def test_pending_tracks_partial_events():
    parser = SSEParser()
    parser.feed(b"event: a\ndata: {")
    assert parser.pending
    parser.feed(b"}\n\n")
    assert not parser.pending


def test_overlong_line_stops_observation_without_raising():
    parser = SSEParser(max_line_bytes=10)
    assert parser.feed(b"data: " + b"x" * 20) == []
    assert parser.overflowed
    assert parser.feed(b"\n\n") == []


def test_invalid_utf8_is_replaced_not_raised():
    assert SSEParser().feed(b"data: \xff\n\n") == [SSEEvent("message", "\ufffd")]


@pytest.mark.parametrize("stream", stream_params())
def test_recorded_streams_parse_to_the_recorded_events(stream: RecordedStream):
    body = stream.body
    events = feed_all(SSEParser(), [body[i : i + 97] for i in range(0, len(body), 97)])
    expected_names = [line[len("event: ") :] for line in body.decode().split("\n") if line.startswith("event: ")]
    assert [e.event for e in events] == expected_names
    assert events[-1] == SSEEvent("done", "[DONE]")
    for event in events[:-1]:
        json.loads(event.data)
