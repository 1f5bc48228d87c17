"""Assistants API objects (thread, run, message, run step) built from what the facade knows.

Shaped like the Assistants v2 objects the official SDK parses (field order as the real API sent
them), so `AssistantEventHandler` and the typed models see what they always saw. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]

# Responses `incomplete_details.reason` → the Assistants run's.
INCOMPLETE_REASONS = {"max_output_tokens": "max_completion_tokens", "content_filter": "content_filter"}


@dataclass(slots=True)
class RunSpec:
    """A run as the Assistants API describes it: the assistant's definition with the run's overrides."""

    run_id: str
    thread_id: str
    assistant_id: str
    model: str  # as the client asked (the upstream may be sent another, per `model_map`)
    created_at: int
    instructions: str = ""
    tools: Sequence[Mapping[str, Any]] = ()
    tool_resources: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: Mapping[str, Any] = field(default_factory=lambda: {"type": "auto", "last_messages": None})
    response_format: Any = "auto"
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True


def thread(thread_id: str, created_at: int, metadata: Mapping[str, Any] | None = None) -> JsonObject:
    return {"id": thread_id, "object": "thread", "created_at": created_at, "metadata": dict(metadata or {}),
            "tool_resources": {}}  # fmt: skip


def run(spec: RunSpec, status: str, **fields: Any) -> JsonObject:
    """The run object at `status`; `fields` set what the status brings (started_at, usage, ...)."""
    body: JsonObject = {
        "id": spec.run_id, "object": "thread.run", "created_at": spec.created_at,
        "assistant_id": spec.assistant_id, "thread_id": spec.thread_id, "status": status,
        "started_at": None, "expires_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "required_action": None, "last_error": None, "model": spec.model, "instructions": spec.instructions,
        "tools": [dict(tool) for tool in spec.tools],
        "metadata": dict(spec.metadata), "temperature": spec.temperature, "top_p": spec.top_p,
        "max_completion_tokens": spec.max_completion_tokens, "max_prompt_tokens": spec.max_prompt_tokens,
        "truncation_strategy": dict(spec.truncation_strategy), "incomplete_details": None, "usage": None,
        "response_format": spec.response_format, "tool_choice": spec.tool_choice,
        "parallel_tool_calls": spec.parallel_tool_calls,
    }  # fmt: skip
    body.update(fields)
    return body


def message(spec: RunSpec, message_id: str, created_at: int, status: str, text: str | None = None, **fields: Any) -> JsonObject:
    content = [] if text is None else [{"type": "text", "text": {"value": text, "annotations": []}}]
    body: JsonObject = {
        "id": message_id, "object": "thread.message", "created_at": created_at, "assistant_id": spec.assistant_id,
        "thread_id": spec.thread_id, "run_id": spec.run_id, "status": status, "incomplete_details": None,
        "incomplete_at": None, "completed_at": None, "role": "assistant", "content": content,
        "attachments": [], "metadata": {},
    }  # fmt: skip
    body.update(fields)
    return body


def step(spec: RunSpec, step_id: str, created_at: int, status: str, details: JsonObject, **fields: Any) -> JsonObject:
    body: JsonObject = {
        "id": step_id, "object": "thread.run.step", "created_at": created_at, "run_id": spec.run_id,
        "assistant_id": spec.assistant_id, "thread_id": spec.thread_id, "type": details["type"], "status": status,
        "cancelled_at": None, "completed_at": None, "expires_at": None, "failed_at": None, "last_error": None,
        "step_details": details, "usage": None,
    }  # fmt: skip
    body.update(fields)
    return body


def tool_call(item: Mapping[str, Any]) -> JsonObject:
    """A file search or code interpreter call the upstream ran, as the run step's tool call shows it.
    (Code interpreter images come as container URLs, not files: only its logs are shown.)"""
    if item.get("type") == "file_search_call":
        return {"id": item.get("id"), "type": "file_search", "file_search": {}}
    outputs = [{"type": "logs", "logs": o.get("logs", "")} for o in item.get("outputs") or ()
               if isinstance(o, Mapping) and o.get("type") == "logs"]  # fmt: skip
    return {"id": item.get("id"), "type": "code_interpreter",
            "code_interpreter": {"input": str(item.get("code") or ""), "outputs": outputs}}  # fmt: skip


def give_outputs(steps: dict[str, JsonObject], outputs: Mapping[Any, str], now: int) -> list[JsonObject]:
    """The tool-call steps whose calls got their outputs, completed with them (in `steps` too)."""
    done = []
    for step_id, found in steps.items():
        calls = found["step_details"].get("tool_calls") or [] if found["type"] == "tool_calls" else []
        if found["status"] != "in_progress" or not any(c.get("id") in outputs for c in calls):
            continue
        details = {"type": "tool_calls", "tool_calls": [
            {**c, "function": {**c["function"], "output": outputs.get(c.get("id"))}} for c in calls]}  # fmt: skip
        steps[step_id] = {**found, "status": "completed", "completed_at": now, "step_details": details}
        done.append(steps[step_id])
    return done


def step_id_of(item_id: str) -> str:
    """A run step's id from its output item's: deterministic, so steps can be listed again later."""
    return "step_" + item_id.split("_", 1)[-1]


def usage(responses_usage: object) -> JsonObject | None:
    """Responses usage → the run's: prompt/completion/total, with cached and reasoning details kept."""
    if not isinstance(responses_usage, Mapping):
        return None
    prompt, completion = responses_usage.get("input_tokens"), responses_usage.get("output_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    total = responses_usage.get("total_tokens")
    body: JsonObject = {"prompt_tokens": prompt, "completion_tokens": completion,
                        "total_tokens": total if type(total) is int else prompt + completion}  # fmt: skip
    cached = _detail(responses_usage, "input_tokens_details", "cached_tokens")
    reasoning = _detail(responses_usage, "output_tokens_details", "reasoning_tokens")
    if cached is not None:
        body["prompt_token_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return body


def add_usage(total: JsonObject | None, more: JsonObject | None) -> JsonObject | None:
    """A run that spans several responses (tool rounds) uses their sum."""
    if total is None or more is None:
        return more or total
    summed = {key: total[key] + more[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    for details, key in (("prompt_token_details", "cached_tokens"), ("completion_tokens_details", "reasoning_tokens")):
        if details in total or details in more:
            summed[details] = {key: total.get(details, {}).get(key, 0) + more.get(details, {}).get(key, 0)}
    return summed


def _detail(usage: Mapping[str, Any], section: str, key: str) -> int | None:
    details = usage.get(section)
    value = details.get(key) if isinstance(details, Mapping) else None
    return value if type(value) is int else None


def message_from_item(item: Mapping[str, Any], thread_id: str, created_at: int, run_id: str | None = None,
                      assistant_id: str | None = None) -> JsonObject:  # fmt: skip
    """A conversation's message item as the thread message the Assistants API showed."""
    content: list[JsonObject] = []
    for part in item.get("content") or ():
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            content.append({"type": "text", "text": {"value": part.get("text", ""), "annotations": []}})
        elif kind == "input_image" and part.get("file_id"):
            content.append({"type": "image_file", "image_file": {"file_id": part["file_id"], "detail": part.get("detail", "auto")}})
        elif kind == "input_image":
            content.append({"type": "image_url", "image_url": {"url": part.get("image_url"), "detail": part.get("detail", "auto")}})
    role = item.get("role") if item.get("role") in ("user", "assistant") else "user"
    return {
        "id": item.get("id"), "object": "thread.message", "created_at": created_at,
        "assistant_id": assistant_id if role == "assistant" else None, "thread_id": thread_id, "run_id": run_id,
        "status": "completed", "incomplete_details": None, "incomplete_at": None, "completed_at": created_at,
        "role": role, "content": content, "attachments": [], "metadata": {},
    }  # fmt: skip


def page(items: Sequence[Mapping[str, Any]], order: str, after: str | None, limit: int) -> JsonObject:
    """One page of `items` (oldest first) by the list contract: `order`, an `after` cursor, `limit`."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [item.get("id") for item in ordered]
    if after in ids:
        ordered = ordered[ids.index(after) + 1 :]
    data = [dict(item) for item in ordered[:limit]]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(ordered) > limit}  # fmt: skip
