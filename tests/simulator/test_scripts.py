"""Recordings rewritten into run scripts: faithful encoding, complete id substitution."""

from __future__ import annotations

import pytest

from gateway.simulator.objects import normalize_tools
from gateway.simulator.recordings import CallKind, load_recordings
from gateway.simulator.scripts import choose_recording, plan_run, replay_plan

RECORDINGS = load_recordings()
NOW = 1_900_000_000


def config(tools: list[dict]) -> dict:
    return {"model": "m", "instructions": "i", "tools": normalize_tools(tools), "metadata": {"k": "v"}}


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_unchanged_script_encodes_exactly_like_the_recording(name: str) -> None:
    """Built frames use OpenAI's own encoding: with nothing substituted they are the recorded bytes."""
    recording = RECORDINGS[name]
    plan = replay_plan(recording)
    recorded = [f for f in recording.opening.frames if f.name not in ("thread.created", "done")]
    built = plan.opening(NOW)
    assert [b"".join(f.chunks()) for f in built] == [b"".join(f.chunks()) for f in recorded]
    assert all(frame.raw is None for frame in built)


@pytest.mark.parametrize(
    ("tools", "expected"),
    [
        ([], "openai-dotnet__StreamingRunWorks"),
        ([{"type": "code_interpreter"}], "openllmetry__test_streaming_new_assistant"),
        ([{"type": "file_search"}, {"type": "code_interpreter"}], "openai-dotnet__FileSearchStreamingWorks"),
        (
            [{"type": "code_interpreter"}, {"type": "function", "function": {"name": "f"}}],
            "openai-dotnet__StreamingToolCall",
        ),
    ],
)
def test_recording_follows_the_tools(tools: list[dict], expected: str) -> None:
    assert choose_recording(RECORDINGS, normalize_tools(tools)).name == expected


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_every_recorded_id_is_substituted(name: str) -> None:
    recording = RECORDINGS[name]
    tools = [{"type": "function", "function": {"name": "lookup"}}] if recording.function_names else []
    plan = plan_run(
        recording,
        thread_id="thread_mine",
        assistant_id="asst_mine",
        config=config(tools),
        include=frozenset(),
        outcome=None,
        now=NOW,
    )
    opening = plan.opening(NOW)
    frames = opening
    if recording.continuation:
        required = opening[-1].data["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert [call["function"]["name"] for call in required] == ["lookup"]
        frames = opening + plan.after_tool_outputs({call["id"]: "out" for call in required}, NOW)
        step = frames[len(opening)].data
        assert step["step_details"]["tool_calls"][0]["id"] == required[0]["id"]
    text = b"".join(chunk for frame in frames for chunk in frame.chunks()).decode()
    assert not [recorded for recorded in recording.ids if recorded in text]
    assert "get_current_weather" not in text
    run_id = opening[0].data["id"]
    for frame in frames:
        data = frame.data
        assert data.get("thread_id", "thread_mine") == "thread_mine"
        assert data.get("assistant_id", "asst_mine") in ("asst_mine", None)
        assert data.get("run_id", run_id) == run_id
        if data["object"] == "thread.run":
            assert data["id"] == run_id and (data["model"], data["instructions"], data["metadata"]) == (
                "m",
                "i",
                {"k": "v"},
            )
            assert data["created_at"] == NOW and data["expires_at"] in (None, NOW + 600)
        for key in ("created_at", "started_at", "completed_at"):
            assert data.get(key) is None or data[key] <= NOW
    if recording.name == "openai-dotnet__FileSearchStreamingWorks":
        assert "favorite food of several people" not in text  # result content: not asked for with include[]


def test_continuation_only_exists_for_the_tool_call_recording() -> None:
    assert [name for name, recording in RECORDINGS.items() if CallKind.SUBMIT_TOOL_OUTPUTS in recording.streams] == [
        "openai-dotnet__StreamingToolCall"
    ]
