"""The API objects the simulator hands out, shaped (field order included) like the recorded ones."""

from __future__ import annotations

import random
import string
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .responses import bad_request

JsonObject = dict[str, Any]
_ALPHANUMERIC = string.ascii_letters + string.digits
_FILE_SEARCH_DEFAULTS = {
    "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0, "hybrid_search": None}
}


def now() -> int:
    return int(time.time())


def new_id(prefix: str) -> str:
    """An id in OpenAI's format for that prefix: `vs_` + hex, `file-` + 22, others `_` + 24."""
    if prefix == "vs":
        return f"vs_{uuid.uuid4().hex}"
    if prefix == "file":
        return "file-" + "".join(random.choices(_ALPHANUMERIC, k=22))
    return f"{prefix}_" + "".join(random.choices(_ALPHANUMERIC, k=24))


def request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def deleted(object_id: str, kind: str) -> JsonObject:
    return {"id": object_id, "object": f"{kind}.deleted", "deleted": True}


def normalize_tools(tools: Any) -> list[JsonObject]:
    if not isinstance(tools, list):
        raise bad_request("Invalid type for 'tools': expected an array.", param="tools", code="invalid_type")
    return [_normalize_tool(index, tool) for index, tool in enumerate(tools)]


def _normalize_tool(index: int, tool: Any) -> JsonObject:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind == "function":
        spec = tool.get("function") or {}
        if not spec.get("name"):
            raise bad_request(
                f"Missing required parameter: 'tools[{index}].function.name'.",
                param=f"tools[{index}].function.name",
                code="missing_required_parameter",
            )
        function = {"name": spec["name"]}
        if "description" in spec:
            function["description"] = spec["description"]
        function["parameters"] = spec.get("parameters") or {"type": "object", "properties": {}}
        function["strict"] = bool(spec.get("strict", False))
        return {"type": "function", "function": function}
    if kind == "file_search":
        return {"type": "file_search", "file_search": {**_FILE_SEARCH_DEFAULTS, **(tool.get("file_search") or {})}}
    if kind == "code_interpreter":
        return {"type": "code_interpreter"}
    raise bad_request(
        f"Invalid value: '{kind}'. Supported values are: 'code_interpreter', 'function', and 'file_search'.",
        param=f"tools[{index}].type",
        code="invalid_value",
    )


def tool_types(tools: list[JsonObject]) -> set[str]:
    return {tool["type"] for tool in tools}


def tool_resources(
    body: Mapping[str, Any], tools: list[JsonObject], new_store: Callable[[JsonObject], JsonObject]
) -> JsonObject:
    """Resolve `tool_resources`, turning the `vector_stores` helper into created store ids."""
    given = body.get("tool_resources") or {}
    resources: JsonObject = {}
    if "code_interpreter" in given or "code_interpreter" in tool_types(tools):
        resources["code_interpreter"] = {"file_ids": list((given.get("code_interpreter") or {}).get("file_ids", []))}
    if search := given.get("file_search"):
        store_ids = list(search.get("vector_store_ids", []))
        store_ids += [new_store(store)["id"] for store in search.get("vector_stores", [])]
        resources["file_search"] = {"vector_store_ids": store_ids}
    return resources


def assistant(body: Mapping[str, Any], tools: list[JsonObject], resources: JsonObject) -> JsonObject:
    return {
        "id": new_id("asst"),
        "object": "assistant",
        "created_at": now(),
        "name": body.get("name"),
        "description": body.get("description"),
        "model": body["model"],
        "instructions": body.get("instructions"),
        "tools": tools,
        "top_p": _first(body.get("top_p"), 1.0),
        "temperature": _first(body.get("temperature"), 1.0),
        "reasoning_effort": body.get("reasoning_effort"),
        "tool_resources": resources,
        "metadata": body.get("metadata") or {},
        "response_format": body.get("response_format") or "auto",
    }


def thread(body: Mapping[str, Any], resources: JsonObject) -> JsonObject:
    return {
        "id": new_id("thread"),
        "object": "thread",
        "created_at": now(),
        "metadata": body.get("metadata") or {},
        "tool_resources": resources,
    }


def message(thread_id: str, body: Mapping[str, Any]) -> JsonObject:
    """A message added by the caller (not produced by a run)."""
    role = body.get("role")
    if role not in ("user", "assistant"):
        raise bad_request(
            f"Invalid value: '{role}'. Supported values are: 'user' and 'assistant'.",
            param="role",
            code="invalid_value",
        )
    content = body.get("content")
    if content is None:
        raise bad_request("Missing required parameter: 'content'.", param="content", code="missing_required_parameter")
    return {
        "id": new_id("msg"),
        "object": "thread.message",
        "created_at": now(),
        "assistant_id": None,
        "thread_id": thread_id,
        "run_id": None,
        "role": role,
        "content": _content(content),
        "attachments": body.get("attachments") or [],
        "metadata": body.get("metadata") or {},
    }


def _content(content: Any) -> list[JsonObject]:
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise bad_request("Invalid type for 'content': expected a string or an array of objects.", param="content")
    return [
        {"type": "text", "text": {"value": part["text"], "annotations": []}} if part.get("type") == "text" else part
        for part in parts
    ]


def file(filename: str, purpose: str, size: int) -> JsonObject:
    return {
        "object": "file",
        "id": new_id("file"),
        "purpose": purpose,
        "filename": filename,
        "bytes": size,
        "created_at": now(),
        "expires_at": None,
        "status": "processed",
        "status_details": None,
    }


def vector_store(body: Mapping[str, Any], file_bytes: list[int]) -> JsonObject:
    created = now()
    count = len(file_bytes)
    return {
        "id": new_id("vs"),
        "object": "vector_store",
        "name": body.get("name"),
        "status": "completed",
        "usage_bytes": sum(file_bytes),
        "created_at": created,
        "file_counts": {"in_progress": 0, "completed": count, "failed": 0, "cancelled": 0, "total": count},
        "metadata": body.get("metadata") or {},
        "expires_after": body.get("expires_after"),
        "expires_at": None,
        "last_active_at": created,
    }


def run_config(body: Mapping[str, Any], assistant_obj: Mapping[str, Any]) -> JsonObject:
    """What a new run is configured with: the request's overrides on top of the assistant."""
    instructions = body["instructions"] if body.get("instructions") is not None else assistant_obj["instructions"]
    if extra := body.get("additional_instructions"):
        instructions = f"{instructions}\n{extra}" if instructions else extra
    tools = normalize_tools(body["tools"]) if body.get("tools") is not None else assistant_obj["tools"]
    return {
        "model": body.get("model") or assistant_obj["model"],
        "instructions": instructions,
        "tools": tools,
        "metadata": body.get("metadata") or {},
        "temperature": _first(body.get("temperature"), assistant_obj["temperature"]),
        "top_p": _first(body.get("top_p"), assistant_obj["top_p"]),
        "reasoning_effort": _first(body.get("reasoning_effort"), assistant_obj["reasoning_effort"]),
        "max_completion_tokens": body.get("max_completion_tokens"),
        "max_prompt_tokens": body.get("max_prompt_tokens"),
        "truncation_strategy": body.get("truncation_strategy") or {"type": "auto", "last_messages": None},
        "response_format": body.get("response_format") or assistant_obj["response_format"],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": _first(body.get("parallel_tool_calls"), True),
    }


def _first(value: Any, default: Any) -> Any:
    return default if value is None else value
