"""The facade's event translation: Responses stream events in, the Assistants run events out."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.domain import SSEEvent
from gateway.http.sse import SSEParser
from gateway.upstreams.responses.events import RunEvents
from gateway.upstreams.responses.objects import RunSpec

SPEC = RunSpec("run_1", "conv_1", "asst_support", "gpt-4o", 1_700_000_000, instructions="Be brief.")
MSG = "msg_0100"


def event(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data["type"], orjson.dumps(data).decode())


def response(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": status, **fields}


TEXT_STREAM = [
    {"type": "response.created", "response": response("in_progress")},
    {"type": "response.in_progress", "response": response("in_progress")},
    {"type": "response.output_item.added", "output_index": 0,
     "item": {"id": MSG, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}},
    {"type": "response.content_part.added", "item_id": MSG, "output_index": 0, "content_index": 0,
     "part": {"type": "output_text", "annotations": [], "text": ""}},
    {"type": "response.output_text.delta", "item_id": MSG, "output_index": 0, "content_index": 0, "delta": "stream"},
    {"type": "response.output_text.delta", "item_id": MSG, "output_index": 0, "content_index": 0, "delta": "ed"},
    {"type": "response.output_text.done", "item_id": MSG, "output_index": 0, "content_index": 0, "text": "streamed"},
    {"type": "response.output_item.done", "output_index": 0,
     "item": {"id": MSG, "type": "message", "status": "completed", "role": "assistant",
              "content": [{"type": "output_text", "annotations": [], "text": "streamed"}]}},
    {"type": "response.completed", "response": response("completed", usage={
        "input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 35})},
]  # fmt: skip


def translate(run: RunEvents, stream: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    raw = run.start() + b"".join(run.feed(event(data)) for data in stream) + run.end()
    parsed = SSEParser().feed(raw)
    return [(e.event, e.data if e.data == "[DONE]" else orjson.loads(e.data)) for e in parsed]


def test_a_text_response_becomes_the_assistants_event_sequence_with_usage() -> None:
    thread = {"id": "conv_1", "object": "thread", "created_at": 1_700_000_000, "metadata": {}, "tool_resources": {}}
    out = translate(RunEvents(SPEC, new_thread=thread, clock=lambda: 1_700_000_001), TEXT_STREAM)
    assert [name for name, _ in out] == [
        "thread.created", "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
        "thread.message.in_progress", "thread.message.delta", "thread.message.delta", "thread.message.completed",
        "thread.run.step.completed", "thread.run.completed", "done",
    ]  # fmt: skip
    events = dict(out)
    assert events["thread.created"]["id"] == "conv_1"
    assert [d["delta"]["content"][0]["text"]["value"] for n, d in out if n == "thread.message.delta"] == ["stream", "ed"]
    message = events["thread.message.completed"]
    assert (message["id"], message["run_id"], message["thread_id"]) == (MSG, "run_1", "conv_1")
    assert message["content"] == [{"type": "text", "text": {"value": "streamed", "annotations": []}}]
    step = events["thread.run.step.completed"]
    assert step["step_details"] == {"type": "message_creation", "message_creation": {"message_id": MSG}}
    completed = events["thread.run.completed"]
    assert (completed["id"], completed["status"], completed["model"], completed["instructions"]) == (
        "run_1", "completed", "gpt-4o", "Be brief.")
    assert completed["usage"] == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35,
                                  "prompt_token_details": {"cached_tokens": 10},
                                  "completion_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    assert events["done"] == "[DONE]"


def test_a_function_call_pauses_the_run_for_its_outputs() -> None:
    fc = "fc_0200"
    stream = [
        {"type": "response.in_progress", "response": response("in_progress")},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "function_call", "id": fc, "call_id": "call_9", "name": "get_capital", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 0, "delta": "{\"country\""},
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 0, "delta": ":\"France\"}"},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {"type": "function_call", "id": fc, "call_id": "call_9", "name": "get_capital",
                  "arguments": "{\"country\":\"France\"}", "status": "completed"}},
        {"type": "response.completed", "response": response("completed", usage={"input_tokens": 50, "output_tokens": 8})},
    ]  # fmt: skip
    run = RunEvents(SPEC)
    out = translate(run, stream)
    names = [name for name, _ in out]
    assert names == ["thread.run.created", "thread.run.queued", "thread.run.in_progress", "thread.run.step.created",
                     "thread.run.step.in_progress", "thread.run.step.delta", "thread.run.step.delta",
                     "thread.run.requires_action", "done"]  # fmt: skip
    paused = dict(out)["thread.run.requires_action"]
    assert paused["required_action"] == {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [
        {"id": "call_9", "type": "function", "function": {"name": "get_capital", "arguments": "{\"country\":\"France\"}"}}
    ]}}  # fmt: skip
    assert run.status == "requires_action" and run.usage == {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58}


def test_the_usage_of_a_continued_run_is_the_sum_of_its_responses() -> None:
    earlier = {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58}
    run = RunEvents(SPEC, prior_usage=earlier, continuing=True)
    out = dict(translate(run, TEXT_STREAM[1:]))
    assert out["thread.run.completed"]["usage"]["total_tokens"] == 93
    assert out["thread.run.completed"]["usage"]["prompt_tokens"] == 80


def test_incomplete_failed_and_cut_short_runs_end_as_the_assistants_api_ended_them() -> None:
    cut = {"type": "response.incomplete", "response": response("incomplete", incomplete_details={"reason": "max_output_tokens"})}
    assert dict(translate(RunEvents(SPEC), [cut]))["thread.run.incomplete"]["incomplete_details"] == {
        "reason": "max_completion_tokens"}
    failed = {"type": "response.failed", "response": response("failed", error={"code": "server_error", "message": "boom"})}
    assert dict(translate(RunEvents(SPEC), [failed]))["thread.run.failed"]["last_error"] == {
        "code": "server_error", "message": "boom"}
    broken = dict(translate(RunEvents(SPEC), TEXT_STREAM[:5]))  # the upstream stream stops mid-message
    assert broken["thread.run.failed"]["status"] == "failed" and "done" in broken


def test_unknown_events_are_skipped() -> None:
    run = RunEvents(SPEC)
    assert run.feed(SSEEvent("response.reasoning_summary_text.delta", "{\"type\": \"response.reasoning_summary_text.delta\"}")) == b""
    assert run.feed(SSEEvent("response.brand_new", "not json")) == b""
