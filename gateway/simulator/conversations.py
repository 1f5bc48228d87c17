"""Endpoints of the Conversations API: conversations (create, retrieve, update, delete) and their items
(create, list with the cursor rules, retrieve, delete). Responses append to them (`responses_api.py`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .objects import JsonObject, deleted, new_id, now
from .responses import bad_request, json_response, list_page, read_json, require
from .responses_store import ConversationRecord, ResponsesStore
from .state import state_of

routes = web.RouteTableDef()
_ROLES = ("assistant", "system", "developer", "user")
# The id prefix the real API gives each kind of item.
_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "file_search_call": "fs",
    "code_interpreter_call": "ci",
    "reasoning": "rs",
}
_MAX_ITEMS = 20  # per create call, as the real API allows


def store_of(request: web.Request) -> ResponsesStore:
    return state_of(request).responses_store


def to_items(raw: Any, param: str) -> list[JsonObject]:
    """Input (a string, or a list of items) as stored items: each with an id, a type and a status."""
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise bad_request(f"Invalid type for '{param}': expected a string or an array of items.", param=param,
                          code="invalid_type")  # fmt: skip
    return [_item(item, f"{param}[{index}]") for index, item in enumerate(raw) if _kept(item)]


def _kept(item: Any) -> bool:
    # A reference to an item the conversation already has adds nothing to it.
    return not (isinstance(item, dict) and item.get("type") == "item_reference")


def _item(item: Any, param: str) -> JsonObject:
    if not isinstance(item, dict):
        raise bad_request(f"Invalid type for '{param}': expected an object.", param=param, code="invalid_type")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise bad_request(f"Invalid value: '{role}'. Supported values are: 'assistant', 'system', 'developer', and "
                              "'user'.", param=f"{param}.role", code="invalid_value")  # fmt: skip
        content = require(item, "content")
        if isinstance(content, str):
            content = [{"type": "output_text" if role == "assistant" else "input_text", "text": content}]
        if not isinstance(content, list) or not all(isinstance(part, dict) and "type" in part for part in content):
            raise bad_request(f"Invalid '{param}.content': expected a string or an array of content parts.",
                              param=f"{param}.content", code="invalid_type")  # fmt: skip
        parts = [{**part, "detail": part.get("detail", "auto")} if part.get("type") == "input_image" else part
                 for part in content]  # fmt: skip
        return {"id": item.get("id") or new_id("msg"), "type": "message", "status": "completed", "content": parts,
                "role": role}  # fmt: skip
    if kind == "function_call_output" and not isinstance(item.get("call_id"), str):
        raise bad_request(f"Missing required parameter: '{param}.call_id'.", param=f"{param}.call_id",
                          code="missing_required_parameter")  # fmt: skip
    return {"id": item.get("id") or new_id(_PREFIXES.get(kind, "item")), **item, "type": kind,
            "status": item.get("status") or "completed"}  # fmt: skip


def item_text(item: JsonObject) -> str:
    """The text an item holds, for counting input tokens."""
    content = item.get("content")
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return " ".join(str(item.get(key, "")) for key in ("content", "arguments", "output") if key in item)


@routes.post("/v1/conversations")
async def create_conversation(request: web.Request) -> web.Response:
    body = await read_json(request)
    items = to_items(body.get("items") or [], "items")
    conversation = {"id": new_id("conv"), "object": "conversation", "created_at": now(),
                    "metadata": _metadata(body)}  # fmt: skip
    store_of(request).add_conversation(ConversationRecord(conversation, items))
    return json_response(conversation)


@routes.get("/v1/conversations/{conversation_id}")
async def retrieve_conversation(request: web.Request) -> web.Response:
    return json_response(store_of(request).conversation(request.match_info["conversation_id"]).obj)


@routes.post("/v1/conversations/{conversation_id}")
async def update_conversation(request: web.Request) -> web.Response:
    record = store_of(request).conversation(request.match_info["conversation_id"])
    body = await read_json(request)
    require(body, "metadata")
    record.obj = {**record.obj, "metadata": _metadata(body)}
    return json_response(record.obj)


@routes.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(request: web.Request) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    store = store_of(request)
    store.conversation(conversation_id)
    del store.conversations[conversation_id]
    return json_response(deleted(conversation_id, "conversation"))


@routes.post("/v1/conversations/{conversation_id}/items")
async def create_items(request: web.Request) -> web.Response:
    record = store_of(request).conversation(request.match_info["conversation_id"])
    body = await read_json(request)
    raw = require(body, "items")
    if isinstance(raw, list) and len(raw) > _MAX_ITEMS:
        raise bad_request(f"Invalid 'items': array too long. Expected an array with maximum length {_MAX_ITEMS}, but "
                          f"got an array with length {len(raw)} instead.", param="items", code="array_above_max_length")  # fmt: skip
    added = to_items(raw, "items")
    record.items.extend(added)
    return json_response({"object": "list", "data": added, "first_id": added[0]["id"] if added else None,
                          "last_id": added[-1]["id"] if added else None, "has_more": False})  # fmt: skip


@routes.get("/v1/conversations/{conversation_id}/items")
async def list_items(request: web.Request) -> web.Response:
    record = store_of(request).conversation(request.match_info["conversation_id"])
    return json_response(list_page(record.items, request.query))


@routes.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def retrieve_item(request: web.Request) -> web.Response:
    store = store_of(request)
    record = store.conversation(request.match_info["conversation_id"])
    return json_response(store.item(record, request.match_info["item_id"]))


@routes.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(request: web.Request) -> web.Response:
    store = store_of(request)
    record = store.conversation(request.match_info["conversation_id"])
    item = store.item(record, request.match_info["item_id"])
    record.items.remove(item)
    return json_response(record.obj)  # the real API answers with the conversation


def _metadata(body: JsonObject) -> JsonObject:
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise bad_request("Invalid 'metadata': expected an object of at most 16 string pairs.", param="metadata")
    return metadata
