"""The facade's threads and messages: a thread is a conversation (same id), a message one of its items.

A thread's `tool_resources` (vector stores, code interpreter files), which a conversation cannot
hold, are kept in the state store (`thread:<id>`) and join every run on the thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.domain import json_object
from gateway.http.upstream import Reply
from gateway.upstreams import Call
from gateway.upstreams.responses import objects
from gateway.upstreams.responses.client import ResponsesClient
from gateway.upstreams.responses.replies import JsonReply, deleted
from gateway.upstreams.responses.requests import attachment_files, input_messages, merge_tool_resources
from gateway.upstreams.responses.runs import RUN_TTL_S

_PAGE_KEYS = ("limit", "order", "after")


async def create_thread(client: ResponsesClient, call: Call, body: Mapping[str, Any]) -> tuple[Reply, dict[str, Any] | None]:
    """The conversation for a new thread (its messages as items); the thread object, or the upstream's refusal."""
    items = input_messages(body.get("messages") or ())
    status, conversation = await client.json(call, "POST", "/conversations", {"metadata": body.get("metadata") or {}, "items": items})
    if status != 200 or not isinstance(conversation.get("id"), str):
        return JsonReply(status if status >= 400 else 502, conversation), None
    if body.get("tool_resources"):
        await call.state.put_record("thread", conversation["id"], orjson.dumps(body["tool_resources"]), RUN_TTL_S)
    await attach(client, call, conversation["id"], body.get("messages") or ())
    thread = objects.thread(conversation["id"], int(conversation.get("created_at") or time.time()), conversation.get("metadata"))
    thread["tool_resources"] = await thread_tool_resources(call, conversation["id"])
    return JsonReply(200, thread), thread


async def thread_tool_resources(call: Call, thread_id: str) -> dict[str, Any]:
    raw = await call.state.get_record("thread", thread_id)
    return dict(json_object(raw)) if raw is not None else {}


async def attach(client: ResponsesClient, call: Call, thread_id: str, messages: Sequence[Mapping[str, Any]]) -> None:
    """Message attachments join the thread's tool resources, as the Assistants API put them: files for
    file search go into the thread's vector store (made for it if it has none), files for the code
    interpreter into its file list."""
    search, code = attachment_files(messages)
    if not search and not code:
        return
    resources = await thread_tool_resources(call, thread_id)
    stores = list((resources.get("file_search") or {}).get("vector_store_ids") or ())
    if search and stores:
        for file_id in search:
            await client.json(call, "POST", f"/vector_stores/{stores[0]}/files", {"file_id": file_id})
    elif search:
        status, store = await client.json(call, "POST", "/vector_stores", {"name": f"thread {thread_id}", "file_ids": search})
        if status == 200 and isinstance(store.get("id"), str):
            stores.append(store["id"])
    merged = merge_tool_resources(resources, {"file_search": {"vector_store_ids": stores}, "code_interpreter": {"file_ids": code}})
    await call.state.put_record("thread", thread_id, orjson.dumps(merged), RUN_TTL_S)


async def thread_call(client: ResponsesClient, call: Call, thread_id: str) -> Reply:
    """GET, POST (metadata) and DELETE of a thread, on its conversation."""
    payload = None
    if call.method == "POST":
        payload = {"metadata": json_object(call.body if isinstance(call.body, bytes) else b"").get("metadata") or {}}
    status, conversation = await client.json(call, call.method, f"/conversations/{thread_id}", payload)
    if status != 200:
        return JsonReply(status, conversation)
    if call.method == "DELETE":
        return deleted(thread_id, "thread")
    thread = objects.thread(thread_id, int(conversation.get("created_at") or 0), conversation.get("metadata"))
    thread["tool_resources"] = await thread_tool_resources(call, thread_id)
    return JsonReply(200, thread)


async def create_message(client: ResponsesClient, call: Call, thread_id: str) -> Reply:
    body = json_object(call.body if isinstance(call.body, bytes) else b"")
    await attach(client, call, thread_id, [body])
    status, added = await client.json(call, "POST", f"/conversations/{thread_id}/items", {"items": input_messages([body])})
    items = added.get("data") if status == 200 else None
    if not isinstance(items, list) or not items:
        return JsonReply(status if status >= 400 else 502, added)
    message = objects.message_from_item(items[0], thread_id, int(time.time()))
    message["metadata"] = dict(body.get("metadata") or {})
    return JsonReply(200, message)


async def list_messages(client: ResponsesClient, call: Call, thread_id: str, query: Mapping[str, str]) -> Reply:
    """A page of the thread's messages: the conversation's message items (tool calls and outputs are
    items too, so a page may hold fewer messages than `limit`), each with the run that wrote it."""
    if "before" in query:
        return JsonReply.error(400, "'before' is not supported in responses mode: page with 'after'.", "unsupported_parameter", param="before")
    forwarded = urlencode({key: query[key] for key in _PAGE_KEYS if key in query})
    status, page = await client.json(call, "GET", f"/conversations/{thread_id}/items", query=forwarded)
    if status != 200:
        return JsonReply(status, page)
    now, messages = int(time.time()), []
    for item in page.get("data") or ():
        if isinstance(item, Mapping) and item.get("type") == "message":
            run_id = await call.state.get_record("message_run", str(item.get("id")))
            messages.append(objects.message_from_item(item, thread_id, now, run_id.decode() if run_id else None))
    if "run_id" in query:
        messages = [m for m in messages if m["run_id"] == query["run_id"]]
    return JsonReply(200, {"object": "list", "data": messages, "first_id": messages[0]["id"] if messages else None,
                           "last_id": messages[-1]["id"] if messages else None,
                           "has_more": bool(page.get("has_more"))})  # fmt: skip


async def retrieve_message(client: ResponsesClient, call: Call, thread_id: str, message_id: str) -> Reply:
    """One message: the conversation's item, if it is a message, with the run that wrote it."""
    status, item = await client.json(call, "GET", f"/conversations/{thread_id}/items/{message_id}")
    if status != 200:
        return JsonReply(status, item)
    if item.get("type") != "message":
        return JsonReply.error(404, f"No message found with id '{message_id}'.", None)
    run_id = await call.state.get_record("message_run", message_id)
    return JsonReply(200, objects.message_from_item(item, thread_id, int(time.time()), run_id.decode() if run_id else None))
