"""Endpoints of the Responses API: create (streamed, plain or in the background), retrieve, cancel,
delete, input items, and input token counts.

An answer replays a real recording (`responses_recordings.py`) chosen by the request: a
`function_call_output` in the input → the answer that follows it; function tools → a function call;
file_search → a file search and its answer; code_interpreter → reasoning and code execution; an
input image → an answer about it; otherwise plain text. Its ids are replaced by fresh ones (and its
conversation by the request's), the request's own settings (model, instructions, metadata, tools ...)
are echoed in the response object, its usage is kept. `X-Simulator-Replay: <cassette>[#<n>]` instead
replays a recorded answer exactly as recorded: its bytes, its ids.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from .conversations import item_text, store_of, to_items
from .faults import FAULT, Fault, Outcome
from .objects import JsonObject, deleted, new_id, now
from .responses import SimulatorError, bad_request, cached_tokens, json_response, list_page, read_json
from .responses_recordings import TERMINAL_EVENTS, Exchange, load_exchanges
from .responses_store import ConversationRecord, ResponseRecord
from .sse import Frame
from .streams import write_stream

routes = web.RouteTableDef()
REPLAY_HEADER = "X-Simulator-Replay"
# The recordings each kind of request is answered with: (cassette stem, index of its exchange).
TEXT = ("openai_responses_model_simple_response", 0)
TEXT_STREAMED = ("openai_conversation_id_streaming_provider_details", 0)
FUNCTION_CALL = ("openai_responses_stream", 0)
AFTER_TOOL_OUTPUT = ("openai_responses_stream", 1)
FILE_SEARCH = ("openai_responses_model_file_search_tool", 0)
CODE_INTERPRETER = ("openai_responses_thinking_with_code_execution_tool_stream", 0)
IMAGE_INPUT = ("openai_responses_image_url_input", 0)

_IDS = re.compile(r"\b(resp|msg|fc|call|rs|ci|fs|cntr|conv)_[0-9a-zA-Z]{16,}\b")
_DATED = r"(-\d{4}-\d{2}-\d{2})?"  # a model snapshot's date suffix
_UNFINISHED = frozenset({"queued", "in_progress"})
# Request settings the response object repeats when the request gives them.
_ECHOED = ("tool_choice", "parallel_tool_calls", "temperature", "top_p", "max_output_tokens", "truncation",
           "reasoning", "user", "safety_identifier", "prompt_cache_key", "service_tier", "top_logprobs",
           "max_tool_calls")  # fmt: skip
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
# What the tools look like in a response object when the request leaves their options out.
_TOOL_DEFAULTS: dict[str, JsonObject] = {
    "function": {"description": None, "strict": True},
    "file_search": {"filters": None, "max_num_results": 20,
                    "ranking_options": {"ranker": "auto", "score_threshold": 0.0}},
    "code_interpreter": {"container": {"type": "auto"}},
}  # fmt: skip


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    _validate(body)
    store = store_of(request)
    conversation_id = _conversation_id(body)
    conversation = store.conversation(conversation_id) if conversation_id else None
    if (previous := body.get("previous_response_id")) is not None and previous not in store.responses:
        raise SimulatorError(404, f"Previous response with id '{previous}' not found.", param="previous_response_id")
    inputs = to_items(body.get("input") or [], "input")
    forced = request.headers.get(REPLAY_HEADER)
    exchange = _forced(forced) if forced else _chosen(body)
    if exchange.status != 200:  # a recorded refusal: answered as recorded
        return web.Response(status=exchange.status, body=orjson.dumps(exchange.body), content_type="application/json")
    streamed, background = body.get("stream") is True, body.get("background") is True
    frames = exchange.frames() if forced else _personalized(exchange, body, conversation_id)
    if background and streamed and not forced:
        frames = _queued_first(frames)
    fault: Fault | None = request.get(FAULT)
    if fault is not None and fault.outcome is not None:
        frames = _ended_by(frames, fault.outcome)
    cached = cached_tokens(request)
    if cached is not None:
        frames = [_with_cached(frame, cached) for frame in frames]
    final = next(f.data["response"] for f in reversed(frames) if f.name in TERMINAL_EVENTS.values())

    record = ResponseRecord(final, inputs, frames=frames)
    if conversation is not None:
        conversation.items.extend(inputs)
    if background and not streamed:
        # Queued now; each retrieve shows the next status, as the real API's polls do.
        stages = list(exchange.polls) if forced and exchange.polls else [_pending(final, "in_progress"), final]
        record.obj = exchange.final() if forced and exchange.polls else _pending(final, "queued")
        record.stages, record.conversation = deque(stages), conversation
    elif background:  # streamed in the background: in progress while its events go out
        record.obj, record.conversation = _pending(final, "in_progress"), conversation
    elif conversation is not None:
        conversation.items.extend(final.get("output") or ())
    if body.get("store", True) is not False:
        store.add_response(record)
    if background and streamed:
        return await _background_stream(request, record, final, _error_event(frames, fault))
    if streamed:
        return await write_stream(request, frames, error=_error_event(frames, fault))
    return json_response(record.obj)


async def _background_stream(request: web.Request, record: ResponseRecord, final: JsonObject, error: Frame) -> web.StreamResponse:
    """A background response, streamed: it runs on whatever becomes of the connection, unless it is
    cancelled, which ends its stream at the next event."""
    try:
        return await write_stream(request, record.frames, error=error, stop=lambda: record.obj["status"] == "cancelled")
    finally:
        if record.obj["status"] != "cancelled":
            record.obj = final
            if record.conversation is not None:
                _append_output(record.conversation, final)


@routes.post("/v1/responses/input_tokens")
async def count_input_tokens(request: web.Request) -> web.Response:
    body = await read_json(request)
    store = store_of(request)
    conversation_id = _conversation_id(body)
    history = store.conversation(conversation_id).items if conversation_id else []
    texts = [item_text(item) for item in [*history, *to_items(body.get("input") or [], "input")]]
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    # Roughly a token per four characters, as OpenAI's rule of thumb has it; never nothing.
    tokens = max(1, math.ceil(sum(len(text) for text in texts) / 4))
    return json_response({"object": "response.input_tokens", "input_tokens": tokens})


@routes.get("/v1/responses/{response_id}")
async def retrieve_response(request: web.Request) -> web.StreamResponse:
    record = store_of(request).response(request.match_info["response_id"])
    if request.query.get("stream") == "true":
        # The events again, after the one the client saw last (`starting_after`: its sequence number).
        after = request.query.get("starting_after", "-1")
        start = int(after) + 1 if after.lstrip("-").isdigit() else 0
        if record.stages:  # a background response watched to its end
            record.obj = record.stages[-1]
            record.stages.clear()
            if record.conversation is not None:
                _append_output(record.conversation, record.obj)
        return await write_stream(request, record.frames[start:])
    if record.stages:
        record.obj = record.stages.popleft()
        if record.obj.get("status") not in _UNFINISHED and record.conversation is not None:
            _append_output(record.conversation, record.obj)
    return json_response(record.obj)


@routes.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: web.Request) -> web.Response:
    record = store_of(request).response(request.match_info["response_id"])
    if not record.obj.get("background"):
        raise bad_request("Only responses created with background=true can be cancelled.")
    status = record.obj.get("status")
    if status in _UNFINISHED:
        record.obj = {**record.obj, "status": "cancelled"}
        record.stages.clear()
    elif status != "cancelled":
        raise bad_request(f"Cannot cancel a response with status '{status}'.")
    return json_response(record.obj)


@routes.delete("/v1/responses/{response_id}")
async def delete_response(request: web.Request) -> web.Response:
    store = store_of(request)
    response_id = request.match_info["response_id"]
    store.response(response_id)
    del store.responses[response_id]
    return json_response(deleted(response_id, "response"))


@routes.get("/v1/responses/{response_id}/input_items")
async def list_input_items(request: web.Request) -> web.Response:
    record = store_of(request).response(request.match_info["response_id"])
    return json_response(list_page(record.input_items, request.query))


# The request.


def _validate(body: JsonObject) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    for flag in ("stream", "background", "store", "parallel_tool_calls"):
        if flag in body and body[flag] is not None and not isinstance(body[flag], bool):
            raise bad_request(f"Invalid type for '{flag}': expected a boolean, but got {type(body[flag]).__name__} "
                              "instead.", param=flag, code="invalid_type")  # fmt: skip
    _check_range(body, "temperature", 0, 2)
    _check_range(body, "top_p", 0, 1)
    tokens = body.get("max_output_tokens")
    if tokens is not None and (not isinstance(tokens, int) or tokens < 16):
        raise bad_request(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but "
                          f"got {tokens} instead.", param="max_output_tokens", code="integer_below_min_value")  # fmt: skip
    if body.get("conversation") is not None and body.get("previous_response_id") is not None:
        raise bad_request("Mutually exclusive parameters: Ensure you are only providing one of: "
                          "'previous_response_id' or 'conversation'.", code="mutually_exclusive_parameters")  # fmt: skip
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise bad_request("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise bad_request(f"Missing required parameter: 'tools[{index}].type'.", param=f"tools[{index}].type",
                              code="missing_required_parameter")  # fmt: skip
        if tool["type"] == "function" and not tool.get("name"):
            raise bad_request(f"Missing required parameter: 'tools[{index}].name'.", param=f"tools[{index}].name",
                              code="missing_required_parameter")  # fmt: skip


def _check_range(body: JsonObject, key: str, low: float, high: float) -> None:
    # Worded as the real API words it (recorded: openai_responses_model_http_error).
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"Invalid type for '{key}': expected a decimal.", param=key, code="invalid_type")
    if value < low:
        raise bad_request(f"Invalid '{key}': decimal below minimum value. Expected a value >= {low}, but got {value} "
                          "instead.", param=key, code="decimal_below_min_value")  # fmt: skip
    if value > high:
        raise bad_request(f"Invalid '{key}': decimal above maximum value. Expected a value <= {high}, but got {value} "
                          "instead.", param=key, code="decimal_above_max_value")  # fmt: skip


def _conversation_id(body: JsonObject) -> str | None:
    conversation = body.get("conversation")
    conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
    if conversation_id is not None and not isinstance(conversation_id, str):
        raise bad_request("Invalid type for 'conversation': expected a string or an object with an 'id'.",
                          param="conversation", code="invalid_type")  # fmt: skip
    return conversation_id


# The recording that answers it.


def _forced(value: str) -> Exchange:
    stem, _, index = value.partition("#")
    exchanges = load_exchanges().get(stem)
    if not exchanges:
        known = ", ".join(sorted(load_exchanges()))
        raise bad_request(f"Unknown {REPLAY_HEADER} '{value}'. Known recordings: {known}.")
    number = int(index) if index.isdigit() else 0
    if number >= len(exchanges):
        raise bad_request(f"Unknown {REPLAY_HEADER} '{value}': {stem} holds {len(exchanges)} responses.")
    return exchanges[number]


def _chosen(body: JsonObject) -> Exchange:
    inputs = body.get("input") if isinstance(body.get("input"), list) else []
    items = [item for item in inputs or () if isinstance(item, dict)]
    tools = {tool.get("type") for tool in body.get("tools") or ()}
    parts = [part for item in items if isinstance(item.get("content"), list) for part in item["content"]]
    if any(item.get("type") == "function_call_output" for item in items):
        stem, index = AFTER_TOOL_OUTPUT
    elif "function" in tools:
        stem, index = FUNCTION_CALL
    elif "file_search" in tools:
        stem, index = FILE_SEARCH
    elif "code_interpreter" in tools:
        stem, index = CODE_INTERPRETER
    elif any(isinstance(part, dict) and part.get("type") == "input_image" for part in parts):
        stem, index = IMAGE_INPUT
    elif body.get("stream") is True or body.get("background") is True:
        # A background response is a streamed one that nobody watches: the same answer.
        stem, index = TEXT_STREAMED
    else:
        stem, index = TEXT
    return load_exchanges()[stem][index]


# The answer, made this request's own.


def _personalized(exchange: Exchange, body: JsonObject, conversation_id: str | None) -> list[Frame]:
    """The recorded events with fresh ids, and the request's settings in every response object."""
    fresh: dict[str, str] = {}
    recorded_model = str(exchange.final().get("model", ""))
    # A dated model answers for its alias (gpt-4o → gpt-4o-2024-08-06); any other is the request's.
    model = recorded_model if re.fullmatch(re.escape(body["model"]) + _DATED, recorded_model) else body["model"]
    tools = [{"type": t["type"], **_TOOL_DEFAULTS.get(t["type"], {}), **t} for t in body.get("tools") or ()]
    functions = [tool["name"] for tool in tools if tool["type"] == "function"]
    echo: JsonObject = {
        "model": model,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "tools": tools,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True) is not False,
        "background": body.get("background") is True,
        **{key: body[key] for key in _ECHOED if key in body},
    }
    if isinstance(body.get("text"), dict):
        echo["text"] = {**(exchange.final().get("text") or {}), **body["text"]}
    if conversation_id is not None:
        echo["conversation"] = {"id": conversation_id}
    created = now()

    def renamed(match: re.Match[str]) -> str:
        if match.group(1) == "conv" and conversation_id is not None:
            return conversation_id
        return fresh.setdefault(match.group(0), new_id(match.group(1)))

    def made_own(value: Any) -> Any:
        if isinstance(value, str):
            return _IDS.sub(renamed, value)
        if isinstance(value, list):
            return [made_own(v) for v in value]
        if not isinstance(value, dict):
            return value
        own = {key: made_own(v) for key, v in value.items()}
        if own.get("object") == "response":
            own.update(echo, created_at=created)
            if own.get("completed_at") is not None:
                own["completed_at"] = now()
        if own.get("type") == "function_call" and functions and own.get("name") not in functions:
            own["name"] = functions[0]  # the recorded call, made to a tool this request has
        return own

    return [Frame(frame.name, made_own(frame.data)) for frame in exchange.frames()]


def _queued_first(frames: Sequence[Frame]) -> list[Frame]:
    """A background stream: created as queued, then `response.queued`, as the real API sends it."""
    created, rest = frames[0], list(frames[1:])
    queued = {**created.data, "response": {**created.data["response"], "status": "queued"}}
    events = [{**queued, "type": "response.created"}, {**queued, "type": "response.queued"}]
    events += [frame.data for frame in rest]
    return [Frame(event["type"], _numbered(event, n)) for n, event in enumerate(events)]


def _ended_by(frames: Sequence[Frame], outcome: Outcome) -> list[Frame]:
    """The answer ending failed or incomplete (`X-Simulator-Fault: run-failed` / `run-incomplete`)."""
    last = max(i for i, frame in enumerate(frames) if frame.name in TERMINAL_EVENTS.values())
    response = {**frames[last].data["response"], "status": str(outcome)}
    if outcome is Outcome.FAILED:
        response["error"] = {"code": "server_error", "message": _SERVER_ERROR}
    else:
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    name = TERMINAL_EVENTS[str(outcome)]
    return [*frames[:last], Frame(name, {**frames[last].data, "type": name, "response": response}), *frames[last + 1 :]]


def _error_event(frames: Sequence[Frame], fault: Fault | None) -> Frame:
    """What an `error-event` fault sends: the Responses API's `error` event."""
    at = min(fault.after, len(frames) - 1) if fault else 0
    error = {"type": "error", "code": "server_error", "message": _SERVER_ERROR, "param": None, "sequence_number": at}
    return Frame("error", error)


def _numbered(event: JsonObject, number: int) -> JsonObject:
    return {**event, "sequence_number": number} if "sequence_number" in event else event


def _with_cached(frame: Frame, cached: int) -> Frame:
    """The frame with its response's usage reporting `cached` input tokens read from the cache (at most all)."""
    response = frame.data.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return frame
    details = {**(usage.get("input_tokens_details") or {}), "cached_tokens": min(cached, usage.get("input_tokens", 0))}
    response = {**response, "usage": {**usage, "input_tokens_details": details}}
    return Frame(frame.name, {**frame.data, "response": response})


def _pending(response: JsonObject, status: str) -> JsonObject:
    """The response before it ended: no output, no usage yet."""
    return {**response, "status": status, "output": [], "usage": None, "completed_at": None}


def _append_output(conversation: ConversationRecord, response: JsonObject) -> None:
    conversation.items.extend(response.get("output") or ())
