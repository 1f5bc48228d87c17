"""Assistants run requests → Responses requests. Pure.

The assistant's definition (model, instructions, tools, tool_resources, sampling, response format)
is sent inline with every response, since prompt objects are closed; the run's own fields override
it as the Assistants API did. What maps exactly, what is approximated and what is refused is in the
README's facade section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.upstreams.responses.objects import JsonObject, RunSpec


def run_spec(
    run_id: str, thread_id: str, assistant_id: str, assistant: Mapping[str, Any], body: Mapping[str, Any], now: int
) -> RunSpec:
    """The run as the Assistants API would describe it: the assistant's definition, the run's overrides."""

    def pick(key: str, default: Any = None) -> Any:
        value = body.get(key)
        return value if value is not None else assistant.get(key, default)

    instructions = pick("instructions", "") or ""
    if isinstance(body.get("additional_instructions"), str):
        instructions = f"{instructions}\n\n{body['additional_instructions']}".strip()
    return RunSpec(
        run_id=run_id,
        thread_id=thread_id,
        assistant_id=assistant_id,
        model=pick("model"),
        created_at=now,
        instructions=instructions,
        tools=list(pick("tools", ()) or ()),
        tool_resources=merge_tool_resources(assistant.get("tool_resources"), _thread_of(body).get("tool_resources"),
                                            body.get("tool_resources")),  # fmt: skip
        metadata=dict(body.get("metadata") or {}),
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        max_prompt_tokens=body.get("max_prompt_tokens"),
        max_completion_tokens=body.get("max_completion_tokens"),
        truncation_strategy=body.get("truncation_strategy") or {"type": "auto", "last_messages": None},
        response_format=pick("response_format", "auto") or "auto",
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=body.get("parallel_tool_calls", True),
    )


def response_request(
    spec: RunSpec, conversation: str | None, upstream_model: str, input_items: list[JsonObject],
    previous_response_id: str | None = None,
) -> JsonObject:  # fmt: skip
    """The `POST /v1/responses` body for one response of the run, continuing `conversation` (or, for a
    run given only the thread's last messages, the run's previous response)."""
    request: JsonObject = {"model": upstream_model, "input": input_items}
    if conversation is not None:
        request["conversation"] = conversation
    if previous_response_id is not None:
        request["previous_response_id"] = previous_response_id
    if spec.instructions:
        request["instructions"] = spec.instructions
    tools = [tool for tool in (response_tool(t, spec.tool_resources) for t in spec.tools) if tool is not None]
    if tools:
        request["tools"] = tools
        request["parallel_tool_calls"] = spec.parallel_tool_calls
        request["tool_choice"] = response_tool_choice(spec.tool_choice)
    for key, value in (("temperature", spec.temperature), ("top_p", spec.top_p),
                       ("max_output_tokens", spec.max_completion_tokens)):  # fmt: skip
        if value is not None:
            request[key] = value
    text_format = response_text_format(spec.response_format)
    if text_format is not None:
        request["text"] = {"format": text_format}
    if spec.truncation_strategy.get("type") == "auto":
        request["truncation"] = "auto"
    if spec.metadata:
        request["metadata"] = dict(spec.metadata)
    return request


# What `POST /v1/responses/input_tokens` reads of a response request (the prompt, not the sampling).
_COUNTED = ("model", "conversation", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
            "text", "truncation")  # fmt: skip


def count_request(request: Mapping[str, Any]) -> JsonObject:
    """The input-token count request for a response request: what its prompt is made of."""
    return {key: request[key] for key in _COUNTED if key in request}


def input_messages(messages: Sequence[Mapping[str, Any]]) -> list[JsonObject]:
    """Thread messages (`thread.messages`, `additional_messages`) → Responses input messages."""
    return [{"role": m.get("role", "user"), "content": _content(m.get("content"), m.get("role") == "assistant")}
            for m in messages]  # fmt: skip


def thread_messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The messages a run call brings: the new thread's, then `additional_messages`."""
    return [*(_thread_of(body).get("messages") or ()), *(body.get("additional_messages") or ())]


def response_tool(tool: Mapping[str, Any], resources: Mapping[str, Any]) -> JsonObject | None:
    kind = tool.get("type")
    if kind == "function":
        function = tool.get("function") or {}
        out: JsonObject = {"type": "function", "name": function.get("name")}
        for key in ("description", "parameters", "strict"):
            if key in function:
                out[key] = function[key]
        out.setdefault("parameters", {"type": "object", "properties": {}})
        return out
    if kind == "file_search":
        settings = tool.get("file_search") or {}
        stores = list((resources.get("file_search") or {}).get("vector_store_ids") or ())
        out = {"type": "file_search", "vector_store_ids": stores}
        if settings.get("max_num_results") is not None:
            out["max_num_results"] = settings["max_num_results"]
        if settings.get("ranking_options"):
            out["ranking_options"] = settings["ranking_options"]
        return out
    if kind == "code_interpreter":
        files = list((resources.get("code_interpreter") or {}).get("file_ids") or ())
        return {"type": "code_interpreter", "container": {"type": "auto", "file_ids": files}}
    return None


def response_tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping):
        if choice.get("type") == "function":
            return {"type": "function", "name": (choice.get("function") or {}).get("name")}
        return {"type": choice.get("type")}
    return choice


def response_text_format(response_format: Any) -> JsonObject | None:
    if not isinstance(response_format, Mapping):
        return None  # "auto": the model's default
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema") or {}
        return {"type": "json_schema", **{k: schema[k] for k in ("name", "schema", "strict", "description") if k in schema}}
    return {"type": response_format.get("type")}


def merge_tool_resources(*sources: object) -> JsonObject:
    """The assistant's, the thread's and the run's tool resources together: vector stores and files add up."""
    stores: list[str] = []
    files: list[str] = []
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        stores += [s for s in (source.get("file_search") or {}).get("vector_store_ids") or () if s not in stores]
        files += [f for f in (source.get("code_interpreter") or {}).get("file_ids") or () if f not in files]
    merged: JsonObject = {}
    if stores:
        merged["file_search"] = {"vector_store_ids": stores}
    if files:
        merged["code_interpreter"] = {"file_ids": files}
    return merged


def last_messages(spec: RunSpec) -> int | None:
    """How many of the thread's latest messages the run is given (`truncation_strategy: last_messages`), if limited."""
    count = spec.truncation_strategy.get("last_messages")
    return count if spec.truncation_strategy.get("type") == "last_messages" and type(count) is int and count >= 1 else None


def history_input(items: Sequence[Mapping[str, Any]], count: int) -> list[JsonObject]:
    """The latest `count` messages of a conversation (its items, newest first) as input, oldest first."""
    messages = [item for item in items if item.get("type") == "message"][:count]
    return [{"role": m.get("role", "user"), "content": [_as_input(p) for p in m.get("content") or () if isinstance(p, Mapping)]}
            for m in reversed(messages)]  # fmt: skip


def answer_items(output: Sequence[Mapping[str, Any]]) -> list[JsonObject]:
    """A response's output messages as conversation items to add to the thread."""
    return [{"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": part.get("text", "")} for part in item.get("content") or ()
                         if isinstance(part, Mapping) and part.get("type") == "output_text"]}
            for item in output if item.get("type") == "message"]  # fmt: skip


def _as_input(part: Mapping[str, Any]) -> JsonObject:
    if part.get("type") in ("input_text", "output_text"):
        return {"type": part["type"], "text": part.get("text", "")}
    return dict(part)


def attachment_files(messages: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The files the messages attach: (for file search, for the code interpreter)."""
    search: list[str] = []
    code: list[str] = []
    for message in messages:
        for attachment in message.get("attachments") or ():
            file_id = attachment.get("file_id") if isinstance(attachment, Mapping) else None
            kinds = {tool.get("type") for tool in attachment.get("tools") or () if isinstance(tool, Mapping)} if file_id else set()
            for kind, files in (("file_search", search), ("code_interpreter", code)):
                if kind in kinds and file_id not in files:
                    files.append(str(file_id))
    return search, code


def _thread_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    thread = body.get("thread")
    return thread if isinstance(thread, Mapping) else {}


def _content(content: Any, assistant: bool) -> Any:
    if isinstance(content, str):
        return content
    parts: list[JsonObject] = []
    for part in content if isinstance(content, list) else []:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            parts.append({"type": "output_text" if assistant else "input_text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            parts.append({"type": "input_image", "image_url": image.get("url"), "detail": image.get("detail", "auto")})
        elif kind == "image_file":
            image = part.get("image_file") or {}
            parts.append({"type": "input_image", "file_id": image.get("file_id"), "detail": image.get("detail", "auto")})
    return parts
