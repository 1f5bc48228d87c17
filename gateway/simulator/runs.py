"""Endpoints of runs and run steps: creation (streamed, polled, or replayed verbatim), polling,
tool outputs and cancellation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from . import objects
from .faults import FAULT
from .objects import JsonObject
from .recordings import CallKind, Recording
from .responses import bad_request, cached_tokens, json_response, list_page, read_json, require
from .scripts import choose_recording, plan_run
from .sse import DONE, Frame
from .state import TERMINAL_STATUSES, RunRecord, SimulatorState, ThreadRecord, state_of
from .streams import write_stream

REPLAY_HEADER = "X-Simulator-Replay"
routes = web.RouteTableDef()


@routes.post("/v1/threads/runs")
async def create_thread_and_run(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = await read_json(request)
    if recording := _replay_recording(request, state):
        return await _replay(request, state, recording, CallKind.CREATE_THREAD_AND_RUN)
    assistant = state.assistant(require(body, "assistant_id"))
    thread = state.add_thread(body.get("thread") or {})
    return await _start(request, state, thread, assistant, body, announce_thread=True)


@routes.post("/v1/threads/{thread_id}/runs")
async def create_run(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = await read_json(request)
    if recording := _replay_recording(request, state):
        return await _replay(request, state, recording, CallKind.CREATE_RUN)
    thread = state.thread(request.match_info["thread_id"])
    assistant = state.assistant(require(body, "assistant_id"))
    if active := state.active_run(thread):
        raise bad_request(f"Thread {thread.obj['id']} already has an active run {active.obj['id']}.")
    for message in body.get("additional_messages") or []:
        state.add_message(thread, message)
    return await _start(request, state, thread, assistant, body, announce_thread=False)


@routes.get("/v1/threads/{thread_id}/runs")
async def list_runs(request: web.Request) -> web.Response:
    thread = state_of(request).thread(request.match_info["thread_id"])
    return json_response(list_page([run.obj for run in thread.runs.values()], request.query))


@routes.get("/v1/threads/{thread_id}/runs/{run_id}")
async def retrieve_run(request: web.Request) -> web.Response:
    state = state_of(request)
    run = _run(request, state)
    state.advance(run)  # every look at a polled run finds it one status further
    return _run_response(state, run)


@routes.post("/v1/threads/{thread_id}/runs/{run_id}")
async def update_run(request: web.Request) -> web.Response:
    state = state_of(request)
    run = _run(request, state)
    body = await read_json(request)
    if "metadata" in body:
        run.obj = {**run.obj, "metadata": body["metadata"] or {}}
    return _run_response(state, run)


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    state = state_of(request)
    run = _run(request, state)
    state.cancel(run)
    return _run_response(state, run)


@routes.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    body = await read_json(request)
    if recording := _replay_recording(request, state):
        return await _replay(request, state, recording, CallKind.SUBMIT_TOOL_OUTPUTS)
    run = _run(request, state)
    if run.status != "requires_action":
        raise bad_request(f'Runs in status "{run.status}" do not accept tool outputs.')
    frames = run.plan.after_tool_outputs(_tool_outputs(body, run), objects.now())
    return await _proceed(request, state, run, frames, stream=bool(body.get("stream")))


@routes.get("/v1/threads/{thread_id}/runs/{run_id}/steps")
async def list_steps(request: web.Request) -> web.Response:
    run = _run(request, state_of(request))
    return json_response(list_page(list(run.steps.values()), request.query))


@routes.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def retrieve_step(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response(state.step(_run(request, state), request.match_info["step_id"]))


async def _start(
    request: web.Request,
    state: SimulatorState,
    thread: ThreadRecord,
    assistant: JsonObject,
    body: dict[str, Any],
    *,
    announce_thread: bool,
) -> web.StreamResponse:
    fault = request.get(FAULT)
    config = objects.run_config(body, assistant)
    now = objects.now()
    plan = plan_run(
        choose_recording(state.recordings, config["tools"]),
        thread_id=thread.obj["id"],
        assistant_id=assistant["id"],
        config=config,
        include=frozenset(request.query.getall("include[]", []) + request.query.getall("include", [])),
        outcome=fault.outcome if fault else None,
        now=now,
        cached_tokens=cached_tokens(request),
    )
    frames = plan.opening(now)
    run = state.add_run(thread, plan, frames)
    # The recordings of runs on existing threads have no `thread.created`; a new thread is announced.
    if announce_thread and body.get("stream"):
        frames = [Frame("thread.created", thread.obj), *frames]
    return await _proceed(request, state, run, frames, stream=bool(body.get("stream")))


async def _proceed(
    request: web.Request, state: SimulatorState, run: RunRecord, frames: Sequence[Frame], *, stream: bool
) -> web.StreamResponse:
    """Stream the frames, or queue them for the polls to come and answer with the run so far."""
    if stream:
        return await write_stream(request, [*frames, DONE])
    run.pending.extend(frames)
    state.advance(run)
    return _run_response(state, run)


def _run_response(state: SimulatorState, run: RunRecord) -> web.Response:
    unfinished = run.status not in TERMINAL_STATUSES and run.status != "requires_action"
    headers = {"openai-poll-after-ms": str(state.settings.poll_after_ms)} if unfinished else None
    return json_response(run.obj, headers=headers)


def _run(request: web.Request, state: SimulatorState) -> RunRecord:
    return state.run(request.match_info["thread_id"], request.match_info["run_id"])


def _tool_outputs(body: dict[str, Any], run: RunRecord) -> dict[str, str]:
    given = require(body, "tool_outputs")
    if not isinstance(given, list) or not all(isinstance(item, dict) and "tool_call_id" in item for item in given):
        raise bad_request("Invalid 'tool_outputs': expected objects with a 'tool_call_id'.", param="tool_outputs")
    outputs = {item["tool_call_id"]: str(item.get("output", "")) for item in given}
    expected = [call["id"] for call in run.obj["required_action"]["submit_tool_outputs"]["tool_calls"]]
    if sorted(outputs) != sorted(expected):
        raise bad_request(f"Expected tool outputs for call_ids {expected}, got {list(outputs)}", param="tool_outputs")
    return outputs


def _replay_recording(request: web.Request, state: SimulatorState) -> Recording | None:
    name = request.headers.get(REPLAY_HEADER)
    if not name:
        return None
    if name not in state.recordings:
        raise bad_request(f"Unknown {REPLAY_HEADER} '{name}'. Known recordings: {', '.join(sorted(state.recordings))}.")
    return state.recordings[name]


async def _replay(
    request: web.Request, state: SimulatorState, recording: Recording, kind: CallKind
) -> web.StreamResponse:
    """Answer with the recorded response of this kind of call, byte for byte and piece by piece."""
    stream = recording.streams.get(kind)
    if stream is None:
        raise bad_request(f"Recording '{recording.name}' holds no {kind} stream.")
    state.register_replay(recording, stream)
    return await write_stream(request, stream.frames, status=stream.status, content_type=stream.content_type)
