"""The Responses + Conversations API, simulated: what the gateway's Assistants facade calls upstream.

Conversations are created, read, deleted and list their items; `POST /v1/responses` replays a real
recorded response (`recordings/responses/`, VCR cassettes of api.openai.com traffic), chosen by the
request: function tools and no tool output yet → the function-call stream; a `function_call_output`
in the input → the answer that follows it; otherwise the plain text stream. `X-Simulator-Replay:
<cassette stem>[#<n>]` forces one. The recording's ids are replaced by fresh ones (and its
conversation by the request's), its usage is kept. With a conversation, the input items and then the
output items are appended to it, as the real API does. Streams are paced and broken like the
Assistants ones (`X-Simulator-Event-Delay-Ms`, `X-Simulator-Fault`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from .objects import JsonObject, new_id, now
from .responses import SimulatorError, bad_request, json_response, list_page, read_json
from .sse import Frame, group_events, parse_frame
from .streams import write_stream

routes = web.RouteTableDef()
REPLAY_HEADER = "X-Simulator-Replay"
_IDS = re.compile(r"\b(resp|msg|fc|conv|call)_[0-9a-zA-Z]{16,}\b")
# (cassette stem, index of its streamed `POST /v1/responses`) for each kind of answer.
_TEXT, _FUNCTION_CALL, _AFTER_TOOL_OUTPUT = (
    ("openai_conversation_id_streaming_provider_details", 0),
    ("openai_responses_stream", 0),
    ("openai_responses_stream", 1),
)


@dataclass
class Conversations:
    """The simulated conversations (id → items, oldest first) and the recorded streams by cassette."""

    recordings: dict[str, list[str]]
    items: dict[str, list[JsonObject]] = field(default_factory=dict)
    created: dict[str, JsonObject] = field(default_factory=dict)
    background: dict[str, list[JsonObject]] = field(default_factory=dict)  # response id → the stages still to show


CONVERSATIONS = web.AppKey("responses_conversations", Conversations)


def load_response_streams() -> dict[str, list[str]]:
    """Each cassette's streamed response bodies, in recorded order."""
    root = resources.files(__package__).joinpath("recordings", "responses")
    streams: dict[str, list[str]] = {}
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            cassette = yaml.load(entry.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            bodies = [i["response"].get("body", {}).get("string") for i in cassette.get("interactions", ())]
            streams[entry.name.removesuffix(".yaml")] = [b for b in bodies if isinstance(b, str) and b.startswith("event:")]
    return streams


def _store(request: web.Request) -> Conversations:
    return request.app[CONVERSATIONS]


def _conversation(request: web.Request, conversation_id: str) -> list[JsonObject]:
    items = _store(request).items.get(conversation_id)
    if items is None:
        raise SimulatorError(404, f"Conversation with id '{conversation_id}' not found.", param=None, code=None)
    return items


@routes.post("/v1/conversations")
async def create_conversation(request: web.Request) -> web.Response:
    body = await read_json(request)
    conversation_id = new_id("conv")
    conversation = {"id": conversation_id, "object": "conversation", "created_at": now(),
                    "metadata": body.get("metadata") or {}}  # fmt: skip
    store = _store(request)
    store.created[conversation_id] = conversation
    store.items[conversation_id] = [_item(item) for item in body.get("items") or ()]
    return json_response(conversation)


@routes.get("/v1/conversations/{conversation_id}")
async def retrieve_conversation(request: web.Request) -> web.Response:
    _conversation(request, request.match_info["conversation_id"])
    return json_response(_store(request).created[request.match_info["conversation_id"]])


@routes.post("/v1/conversations/{conversation_id}")
async def update_conversation(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    _conversation(request, conversation_id)
    body = await read_json(request)
    conversation = _store(request).created[conversation_id]
    conversation["metadata"] = body.get("metadata") or {}
    return json_response(conversation)


@routes.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    _conversation(request, conversation_id)
    del _store(request).items[conversation_id]
    return json_response({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@routes.get("/v1/conversations/{conversation_id}/items")
async def list_items(request: web.Request) -> web.Response:
    items = _conversation(request, request.match_info["conversation_id"])
    return json_response(list_page(items, request.query))


@routes.post("/v1/conversations/{conversation_id}/items")
async def create_items(request: web.Request) -> web.Response:
    items = _conversation(request, request.match_info["conversation_id"])
    body = await read_json(request)
    added = [_item(item) for item in body.get("items") or ()]
    items.extend(added)
    return json_response({"object": "list", "data": added, "first_id": added[0]["id"] if added else None,
                          "last_id": added[-1]["id"] if added else None, "has_more": False})  # fmt: skip


@routes.post("/v1/responses")
async def create_response(request: web.Request) -> web.StreamResponse:
    body = await read_json(request)
    if not isinstance(body.get("model"), str):
        raise bad_request("Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    conversation = body.get("conversation")
    conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
    if conversation_id is not None and body.get("previous_response_id") is not None:
        raise bad_request("Only one of 'conversation' and 'previous_response_id' may be given.", param="conversation")
    items = _conversation(request, str(conversation_id)) if conversation_id is not None else None
    frames = _replay(request, body, conversation_id)
    completed = next((f.data["response"] for f in frames if f.name in ("response.completed", "response.incomplete")), None)
    if items is not None:
        inputs = body.get("input")
        items.extend(_item(i) for i in ([{"role": "user", "content": inputs}] if isinstance(inputs, str) else inputs or ()))
        items.extend((completed or {}).get("output") or ())
    if body.get("stream") is True:
        return await write_stream(request, frames)
    if body.get("background") is True and completed is not None:
        # Background mode: queued now; each retrieve moves it on (in_progress, then the recorded end).
        _store(request).background[completed["id"]] = [_pending(completed, "in_progress"), completed]
        return json_response(_pending(completed, "queued"))
    return json_response(completed)


@routes.get("/v1/responses/{response_id}")
async def retrieve_response(request: web.Request) -> web.Response:
    stages = _background(request)
    return json_response(stages.pop(0) if len(stages) > 1 else stages[0])


@routes.post("/v1/responses/{response_id}/cancel")
async def cancel_response(request: web.Request) -> web.Response:
    stages = _background(request)
    if stages[-1]["status"] in ("completed", "incomplete", "failed") and len(stages) == 1:
        raise bad_request("Cannot cancel a completed response.", param=None)
    stages[:] = [{**_pending(stages[-1], "cancelled")}]
    return json_response(stages[0])


def _background(request: web.Request) -> list[JsonObject]:
    stages = _store(request).background.get(request.match_info["response_id"])
    if stages is None:
        raise SimulatorError(404, f"Response with id '{request.match_info['response_id']}' not found.")
    return stages


def _pending(response: JsonObject, status: str) -> JsonObject:
    """The response before it ended: no output, no usage yet."""
    return {**response, "status": status, "output": [], "usage": None, "completed_at": None}


def _replay(request: web.Request, body: dict[str, Any], conversation_id: object) -> list[Frame]:
    stem, index = _choose(request, body)
    recorded = _store(request).recordings.get(stem, [])
    if index >= len(recorded):
        raise bad_request(f"No recorded response {stem}#{index}.", param=REPLAY_HEADER)
    fresh: dict[str, str] = {}

    def renamed(match: re.Match[str]) -> str:
        old = match.group(0)
        if match.group(1) == "conv" and isinstance(conversation_id, str):
            return conversation_id
        return fresh.setdefault(old, new_id(match.group(1)))

    text = _IDS.sub(renamed, recorded[index])
    return [parse_frame(event) for event in group_events(text.splitlines(keepends=True)) if "".join(event).strip()]


def _choose(request: web.Request, body: dict[str, Any]) -> tuple[str, int]:
    forced = request.headers.get(REPLAY_HEADER)
    if forced:
        stem, _, index = forced.partition("#")
        return stem, int(index) if index.isdigit() else 0
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else []
    if any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items):
        return _AFTER_TOOL_OUTPUT
    if any(isinstance(t, dict) and t.get("type") == "function" for t in body.get("tools") or ()):
        return _FUNCTION_CALL
    return _TEXT


def _item(item: Any) -> JsonObject:
    """An input item as the conversation keeps it: with an id, a type and a status."""
    if not isinstance(item, dict):
        raise bad_request("Invalid item: expected an object.", param="items")
    kind = item.get("type", "message")
    prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(kind, "item")
    content = item.get("content")
    if kind == "message" and isinstance(content, str):
        content = [{"type": "input_text" if item.get("role") != "assistant" else "output_text", "text": content}]
    return {"id": item.get("id") or new_id(prefix), **item, "type": kind, "status": "completed",
            **({"content": content} if content is not None else {})}  # fmt: skip
