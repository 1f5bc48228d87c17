"""Endpoints of the plain resources: assistants, threads, messages, files and vector stores."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from aiohttp import web

from . import objects
from .responses import bad_request, json_response, list_page, read_json, require
from .state import state_of

routes = web.RouteTableDef()
_ASSISTANT_FIELDS = (
    "model",
    "name",
    "description",
    "instructions",
    "temperature",
    "top_p",
    "reasoning_effort",
    "metadata",
)


# Assistants


@routes.post("/v1/assistants")
async def create_assistant(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request)
    require(body, "model")
    tools = objects.normalize_tools(body.get("tools") or [])
    resources = objects.tool_resources(body, tools, state.add_vector_store)
    assistant = objects.assistant(body, tools, resources)
    state.assistants[assistant["id"]] = assistant
    return json_response(assistant)


@routes.get("/v1/assistants")
async def list_assistants(request: web.Request) -> web.Response:
    return json_response(list_page(list(state_of(request).assistants.values()), request.query))


@routes.get("/v1/assistants/{assistant_id}")
async def retrieve_assistant(request: web.Request) -> web.Response:
    return json_response(state_of(request).assistant(request.match_info["assistant_id"]))


@routes.post("/v1/assistants/{assistant_id}")
async def update_assistant(request: web.Request) -> web.Response:
    state = state_of(request)
    assistant = state.assistant(request.match_info["assistant_id"])
    body = await read_json(request)
    assistant.update({key: body[key] for key in _ASSISTANT_FIELDS if key in body})
    if "response_format" in body:
        assistant["response_format"] = body["response_format"] or "auto"
    if "tools" in body:
        assistant["tools"] = objects.normalize_tools(body["tools"] or [])
    if "tool_resources" in body or "tools" in body:
        merged = {"tool_resources": body.get("tool_resources", assistant["tool_resources"])}
        assistant["tool_resources"] = objects.tool_resources(merged, assistant["tools"], state.add_vector_store)
    return json_response(assistant)


@routes.delete("/v1/assistants/{assistant_id}")
async def delete_assistant(request: web.Request) -> web.Response:
    state = state_of(request)
    assistant_id = state.assistant(request.match_info["assistant_id"])["id"]
    del state.assistants[assistant_id]
    return json_response(objects.deleted(assistant_id, "assistant"))


# Threads


@routes.post("/v1/threads")
async def create_thread(request: web.Request) -> web.Response:
    return json_response(state_of(request).add_thread(await read_json(request)).obj)


@routes.get("/v1/threads/{thread_id}")
async def retrieve_thread(request: web.Request) -> web.Response:
    return json_response(state_of(request).thread(request.match_info["thread_id"]).obj)


@routes.post("/v1/threads/{thread_id}")
async def update_thread(request: web.Request) -> web.Response:
    thread = state_of(request).thread(request.match_info["thread_id"])
    body = await read_json(request)
    thread.obj = {**thread.obj, **{key: body[key] or {} for key in ("metadata", "tool_resources") if key in body}}
    return json_response(thread.obj)


@routes.delete("/v1/threads/{thread_id}")
async def delete_thread(request: web.Request) -> web.Response:
    state = state_of(request)
    thread_id = state.thread(request.match_info["thread_id"]).obj["id"]
    del state.threads[thread_id]
    return json_response(objects.deleted(thread_id, "thread"))


# Messages


@routes.post("/v1/threads/{thread_id}/messages")
async def create_message(request: web.Request) -> web.Response:
    state = state_of(request)
    thread = state.thread(request.match_info["thread_id"])
    body = await read_json(request)
    if active := state.active_run(thread):
        raise bad_request(f"Can't add messages to {thread.obj['id']} while a run {active.obj['id']} is active.")
    return json_response(state.add_message(thread, body))


@routes.get("/v1/threads/{thread_id}/messages")
async def list_messages(request: web.Request) -> web.Response:
    messages = list(state_of(request).thread(request.match_info["thread_id"]).messages.values())
    if run_id := request.query.get("run_id"):
        messages = [message for message in messages if message["run_id"] == run_id]
    return json_response(list_page(messages, request.query))


@routes.get("/v1/threads/{thread_id}/messages/{message_id}")
async def retrieve_message(request: web.Request) -> web.Response:
    state = state_of(request)
    thread = state.thread(request.match_info["thread_id"])
    return json_response(state.message(thread, request.match_info["message_id"]))


# Files


@routes.post("/v1/files")
async def upload_file(request: web.Request) -> web.Response:
    state = state_of(request)
    fields = _form_fields(request.headers.get("Content-Type", ""), await request.read())
    if "file" not in fields:
        raise bad_request("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    if "purpose" not in fields:
        raise bad_request("Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter")
    filename, content = fields["file"]
    stored = state.add_file(filename or "upload", fields["purpose"][1].decode(), content)
    return json_response(stored.obj)


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    files = [stored.obj for stored in state_of(request).files.values()]
    if purpose := request.query.get("purpose"):
        files = [file for file in files if file["purpose"] == purpose]
    return json_response(list_page(files, request.query))


@routes.get("/v1/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    return json_response(state_of(request).file(request.match_info["file_id"]).obj)


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.Response:
    stored = state_of(request).file(request.match_info["file_id"])
    return web.Response(body=stored.content, content_type="application/octet-stream")


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    state = state_of(request)
    file_id = state.file(request.match_info["file_id"]).obj["id"]
    del state.files[file_id]
    return json_response({"object": "file", "id": file_id, "deleted": True})


def _form_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart/form-data body into {name: (filename, content)}.

    The body was already read (to record it), which leaves aiohttp's own form parser nothing to
    read; the stdlib MIME parser works on the bytes instead.
    """
    if not content_type.startswith("multipart/form-data"):
        raise bad_request("Invalid Content-Type: expected multipart/form-data.")
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str):
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


# Vector stores (just enough for file_search assistants)


@routes.post("/v1/vector_stores")
async def create_vector_store(request: web.Request) -> web.Response:
    return json_response(state_of(request).add_vector_store(await read_json(request)))


@routes.get("/v1/vector_stores")
async def list_vector_stores(request: web.Request) -> web.Response:
    return json_response(list_page(list(state_of(request).vector_stores.values()), request.query))


@routes.get("/v1/vector_stores/{vector_store_id}")
async def retrieve_vector_store(request: web.Request) -> web.Response:
    return json_response(state_of(request).vector_store(request.match_info["vector_store_id"]))


@routes.post("/v1/vector_stores/{vector_store_id}/files")
async def add_vector_store_file(request: web.Request) -> web.Response:
    state = state_of(request)
    store = state.vector_store(request.match_info["vector_store_id"])
    file_id = (await read_json(request)).get("file_id")
    stored = state.file(str(file_id))
    store["file_counts"] = {**store["file_counts"], "completed": store["file_counts"]["completed"] + 1,
                            "total": store["file_counts"]["total"] + 1}  # fmt: skip
    store["usage_bytes"] += stored.obj["bytes"]
    return json_response({"id": stored.obj["id"], "object": "vector_store.file", "created_at": stored.obj["created_at"],
                          "vector_store_id": store["id"], "status": "completed", "usage_bytes": stored.obj["bytes"],
                          "last_error": None, "attributes": {}, "chunking_strategy": {"type": "static", "static": {
                              "max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}})  # fmt: skip


@routes.delete("/v1/vector_stores/{vector_store_id}")
async def delete_vector_store(request: web.Request) -> web.Response:
    state = state_of(request)
    store_id = state.vector_store(request.match_info["vector_store_id"])["id"]
    del state.vector_stores[store_id]
    return json_response(objects.deleted(store_id, "vector_store"))
