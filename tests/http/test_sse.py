from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


_FIELDS = st.sampled_from([b"event", b"data", b"id", b"retry", b"", b"dat", b"event "])
_VALUES = st.binary(max_size=6).map(lambda v: v.replace(b"\n", b"").replace(b"\r", b""))
_LINE = st.one_of(
    st.tuples(_FIELDS, st.sampled_from([b":", b": ", b":  "]), _VALUES).map(b"".join),
    st.sampled_from([b"", b":comment", b"data", b"event: e", b"data: {}", b"id: 7"]),
)
_LINE_ENDS = st.sampled_from([b"\n", b"\n", b"\n", b"\r\n", b"\r"])
_USUAL = st.tuples(_VALUES, _VALUES).map(lambda nd: b"event: " + nd[0] + b"\ndata: " + nd[1] + b"\n\n")
_PIECE = st.one_of(_USUAL, st.tuples(_LINE, _LINE_ENDS).map(b"".join))  # an event as servers write it, or any line


@settings(max_examples=500, deadline=None)
@given(
    pieces=st.lists(_PIECE, max_size=25),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_any_stream_parses_the_same_however_it_is_cut(pieces: list[bytes], cuts: list[int]) -> None:
    """Whole, cut anywhere, or a byte at a time: the same events (whole events in one chunk take a
    faster path than lines arriving one by one)."""
    body = b"".join(pieces)
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    by_byte = feed_all(SSEParser(), [body[i : i + 1] for i in range(len(body))])
    assert feed_all(SSEParser(), [body]) == by_byte
    assert feed_all(SSEParser(), chunks) == by_byte
