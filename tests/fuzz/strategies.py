"""Hypothesis strategies for hostile input: JSON of any shape, valid run bodies and their mutations,
header values, paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

Path = tuple[str | int, ...]

# --- any JSON ------------------------------------------------------------------------------

_text = st.text(max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)

RUN_FIELDS = (
    "assistant_id", "model", "instructions", "additional_instructions", "additional_messages", "tools",
    "metadata", "temperature", "top_p", "stream", "max_prompt_tokens", "max_completion_tokens",
    "truncation_strategy", "tool_choice", "parallel_tool_calls", "response_format", "thread",
    "tool_resources", "reasoning_effort", "tool_outputs",
)  # fmt: skip
# Objects whose keys are mostly the real field names, with values of any shape: deeper into validation.
field_soup = st.dictionaries(st.sampled_from(RUN_FIELDS) | _text, json_values, max_size=6)

# --- valid run bodies ----------------------------------------------------------------------

_short = st.text(max_size=60)
_identifier = st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True)
_metadata = st.dictionaries(st.text(max_size=64), st.text(max_size=80), max_size=4)
_file_id = st.from_regex(r"file-[A-Za-z0-9]{4,12}", fullmatch=True)
_json_object = st.dictionaries(_text, json_values, max_size=4)

_function_tool = st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": _identifier},
        optional={"description": _short, "parameters": _json_object, "strict": st.booleans() | st.none()},
    )},
)  # fmt: skip
_file_search_tool = st.fixed_dictionaries(
    {"type": st.just("file_search")},
    optional={"file_search": st.fixed_dictionaries({}, optional={
        "max_num_results": st.integers(1, 50),
        "ranking_options": st.fixed_dictionaries(
            {"score_threshold": st.floats(0, 1)}, optional={"ranker": st.sampled_from(["auto", "default_2024_08_21"])}
        ),
    })},
)  # fmt: skip
_tools = st.lists(st.just({"type": "code_interpreter"}) | _file_search_tool | _function_tool, max_size=4)

_content_part = (
    st.fixed_dictionaries({"type": st.just("text"), "text": _short})
    | st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from(["https://example.com/a.png", "data:image/png;base64,AAAA"])},
        optional={"detail": st.sampled_from(["auto", "low", "high"])},
    )})
    | st.fixed_dictionaries({"type": st.just("image_file"), "image_file": st.fixed_dictionaries({"file_id": _file_id})})
)  # fmt: skip
_attachment = st.fixed_dictionaries(
    {"file_id": _file_id, "tools": st.lists(st.sampled_from([{"type": "code_interpreter"}, {"type": "file_search"}]),
                                            max_size=2)}
)  # fmt: skip
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]), "content": _short | st.lists(_content_part, min_size=1, max_size=3)},
    optional={"metadata": _metadata, "attachments": st.lists(_attachment, max_size=2)},
)
_thread = st.fixed_dictionaries({}, optional={"messages": st.lists(_message, max_size=3), "metadata": _metadata})
_tool_choice = st.sampled_from(["none", "auto", "required"]) | st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": _identifier})}
)
_response_format = st.sampled_from(["auto", {"type": "text"}, {"type": "json_object"}]) | st.fixed_dictionaries(
    {"type": st.just("json_schema"), "json_schema": st.fixed_dictionaries(
        {"name": _identifier}, optional={"schema": _json_object, "strict": st.booleans(), "description": _short}
    )},
)  # fmt: skip
_run_options = {
    "model": st.sampled_from(["gpt-4o", "gpt-4o-mini"]),
    "instructions": _short,
    "tools": _tools,
    "metadata": _metadata,
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "stream": st.booleans(),
    "max_prompt_tokens": st.integers(256, 100_000),
    "max_completion_tokens": st.integers(256, 100_000),
    "truncation_strategy": st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "last_messages"])}, optional={"last_messages": st.integers(1, 50)}
    ),
    "tool_choice": _tool_choice,
    "parallel_tool_calls": st.booleans(),
    "response_format": _response_format,
}


def create_thread_and_run(assistant_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"assistant_id": st.just(assistant_id)}, optional={**_run_options, "thread": _thread})


def create_run(assistant_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"assistant_id": st.just(assistant_id)},
        optional={
            **_run_options,
            "additional_instructions": _short,
            "additional_messages": st.lists(_message, max_size=2),
            "reasoning_effort": st.sampled_from(["low", "medium", "high"]),
        },
    )


submit_tool_outputs = st.fixed_dictionaries(
    {"tool_outputs": st.lists(st.fixed_dictionaries({}, optional={"tool_call_id": _short, "output": _short}), max_size=3)},
    optional={"stream": st.booleans()},
)

# --- mutations -------------------------------------------------------------------------------


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path to a value inside `value` (not the root itself)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def dotted(path: Path) -> str:
    """The gateway's `param` form: `thread.messages[0].content`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.removeprefix(".")


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    """A deep copy that shares nothing (strategies may put one object at several places)."""
    return json.loads(json.dumps(body))  # type: ignore[no-any-return]


def replaced(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    mutated = _copy(body)
    target: Any = mutated
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return mutated


def removed(body: dict[str, Any], path: Path) -> dict[str, Any]:
    mutated = _copy(body)
    target: Any = mutated
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return mutated


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


_BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "number": st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False),
    "string": _text,
    "array": st.lists(json_scalars, max_size=3),
    "object": st.dictionaries(_text, json_scalars, max_size=3),
}


def other_kind(value: Any) -> st.SearchStrategy[Any]:
    """A value of any JSON kind but `value`'s own."""
    kind = json_kind(value)
    return st.one_of([strategy for name, strategy in _BY_KIND.items() if name != kind])


# --- headers and paths -------------------------------------------------------------------------

# What an HTTP client can put in a header value (no CR, LF or NUL: aiohttp refuses to send them).
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, blacklist_categories=("Cs",),
                                      blacklist_characters="\x7f"), max_size=60)  # fmt: skip
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,30}", fullmatch=True)
INTERESTING_HEADERS = (
    "Authorization", "Content-Type", "Content-Encoding", "X-Request-ID", "OpenAI-Beta", "OpenAI-Organization",
    "Connection", "Accept", "Accept-Encoding", "Traceparent", "Tracestate", "Expect", "Range", "Upgrade", "TE",
    "Transfer-Encoding", "Host", "X-Forwarded-For", "X-Simulator-Replay", "Cookie", "Content-Range", "If-None-Match",
)  # fmt: skip

_segment_piece = st.sampled_from(
    ["..", ".", "%2e", "%2E", "%2e%2e", "%2f", "%2F", "%5c", "\\", ";", "%00", "%ff", "%25", "%252e%252e", "%3f", "%23",
     "threads", "runs", "assistants", "files", "vector_stores", "organization", "admin", "v1", "submit_tool_outputs",
     "thread_1", "run_1", "content", "~", "@", ":", "+", "!", "$", "'", "(", ")", "*", ",", "="]
) | st.from_regex(r"[A-Za-z0-9._~-]{1,8}", fullmatch=True)  # fmt: skip
_segment = st.lists(_segment_piece, min_size=0, max_size=3).map("".join)
raw_paths = st.tuples(
    st.sampled_from(["/v1/", "/v1/threads/", "/v1/assistants/", "/v1/files/", "/", "//", "/v1//", "/admin/", "/v1/threads/x/runs/"]),
    st.lists(_segment, min_size=0, max_size=5).map("/".join),
    st.sampled_from(["", "/", "?", "?a=%ff&b=..%2f", "?limit=1&order=desc"]),
).map("".join)  # fmt: skip
