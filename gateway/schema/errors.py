"""Turn a pydantic `ValidationError` into an OpenAI-style `InvalidRequest`.

`param` is the dotted body path OpenAI reports (`thread.messages[0].content[1].image_url.url`).
Pydantic's `loc` also holds union tags and a `[key]` marker for dict keys; which segments are
tags is decided by walking the model's type annotations along the loc (a union position
consumes one tag), never by guessing from the segment's text. This relies on the union
conventions of `gateway.openai_parts`: callable-discriminator unions with `Tag`ged members.
"""

from __future__ import annotations

import types
from collections.abc import Sized
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from gateway.errors import InvalidRequest

INVALID_TYPE = "invalid_type"
"""Error type the request models raise for a value of the wrong JSON kind (incl. forbidden null)."""

_TYPE_ERRORS = {
    INVALID_TYPE, "string_type", "int_type", "float_type", "bool_type", "list_type", "dict_type", "model_type"
}


def invalid_request_from(error: ValidationError, model: type[BaseModel]) -> InvalidRequest:
    """The first error decides param and code; the message says how many more there were."""
    errors = error.errors(include_url=False)
    first = errors[0]
    param, message, code = _describe(first, _locate(model, first["loc"]))
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" ({more} more validation error{'s' if more > 1 else ''} in this request.)"
    return InvalidRequest(message, param=param, code=code)


@dataclass(frozen=True)
class _Location:
    param: str | None  # None: the body itself
    node: Any  # the type annotation at that path; None for a field the model does not know
    is_key: bool  # the error is about a dict key rather than its value


def _locate(model: type[BaseModel], loc: tuple[int | str, ...]) -> _Location:
    node: Any = model
    path = ""
    is_key = False
    for segment in loc:
        node = _strip(node)
        if _is_union(node):
            node = _members(node)[str(segment)]
        elif isinstance(segment, int):
            path += f"[{segment}]"
            node = get_args(node)[0]
        elif isinstance(node, type) and issubclass(node, BaseModel):
            path += f".{segment}"
            node = next((f.annotation for name, f in node.model_fields.items() if (f.alias or name) == segment), None)
        elif get_origin(node) is dict:
            path += f".{segment}"
            node = get_args(node)[1]
        else:  # past a scalar only pydantic's "[key]" marker can follow
            is_key = True
    return _Location(path.removeprefix(".") or None, _strip(node), is_key)


def _strip(node: Any) -> Any:
    """Remove Annotated metadata and `| None` until a model, container, scalar or real union is left."""
    while True:
        if get_origin(node) is Annotated:
            node = get_args(node)[0]
        elif _is_union(node) and type(None) in get_args(node):
            rest = tuple(arg for arg in get_args(node) if arg is not type(None))
            node = rest[0] if len(rest) == 1 else Union[rest]  # noqa: UP007 (built at run time)
        else:
            return node


def _is_union(node: Any) -> bool:
    return get_origin(node) in (Union, types.UnionType)


def _members(union: Any) -> dict[str, Any]:
    """Tag -> member annotation of a discriminated union."""
    return {
        meta.tag: member
        for member in get_args(union)
        for meta in getattr(member, "__metadata__", ())
        if isinstance(meta, Tag)
    }


def _describe(error: ErrorDetails, at: _Location) -> tuple[str | None, str, str]:
    """(param, message, code) for one pydantic error."""
    kind, value, ctx, param = error["type"], error["input"], error.get("ctx", {}), at.param
    quoted = f"'{param}'" if param else "the request body"
    if kind == "missing":
        return param, f"Missing required parameter: {quoted}.", "missing_required_parameter"
    if kind == "extra_forbidden":
        return param, f"Unknown parameter: {quoted}.", "unknown_parameter"
    if kind in _TYPE_ERRORS or (kind == "literal_error" and not isinstance(value, str)):
        return param, _type_message(quoted, _expected(at.node), value), "invalid_type"
    if kind == "literal_error":
        return param, _value_message(value, get_args(at.node)), "invalid_value"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _union_problem(param, at.node, value)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return (param, *_range_problem(quoted, at.node, value, ctx))
    if kind in ("too_long", "too_short", "string_too_long"):
        return (param, *_length_problem(quoted, kind, at.is_key, value, ctx))
    if kind == "string_pattern_mismatch":
        expected = f"Expected a string that matches the pattern '{ctx['pattern']}'."
        return param, f"Invalid {quoted}: string does not match pattern. {expected}", "invalid_value"
    detail = str(ctx["error"]) if kind == "value_error" else error["msg"] + "."
    return param, f"Invalid {quoted}: {detail}", "invalid_value"


def _union_problem(param: str | None, union: Any, value: object) -> tuple[str | None, str, str]:
    """A `type`-discriminated union could not pick a member (see `openai_parts.BY_TYPE`)."""
    if not isinstance(value, dict):
        return param, _type_message(f"'{param}'", _expected(union), value), "invalid_type"
    type_param = f"{param}.type"
    if "type" not in value:
        return type_param, f"Missing required parameter: '{type_param}'.", "missing_required_parameter"
    if not isinstance(value["type"], str):
        return type_param, _type_message(f"'{type_param}'", "a string", value["type"]), "invalid_type"
    return type_param, _value_message(value["type"], tuple(_members(union))), "invalid_value"


def _range_problem(quoted: str, node: Any, value: object, ctx: dict[str, Any]) -> tuple[str, str]:
    number = "decimal" if node is float else "integer"
    [(bound_name, bound)] = ctx.items()
    operator = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[bound_name]
    side, words = ("below_min", "below minimum") if bound_name.startswith("g") else ("above_max", "above maximum")
    message = _limit_message(quoted, f"{number} {words} value", f"a value {operator} {_number(bound)}", _number(value))
    return message, f"{number}_{side}_value"


def _length_problem(quoted: str, kind: str, is_key: bool, value: Any, ctx: dict[str, Any]) -> tuple[str, str]:
    if kind == "string_too_long":
        noun = "key" if is_key else "string"
        expected, got = f"a {noun} with maximum length {ctx['max_length']}", f"a {noun} with length {len(value)}"
        return _limit_message(quoted, f"{noun} too long", expected, got), "string_above_max_length"
    # The input itself, not ctx: pydantic ≥ 2.14 leaves actual_length unset for dicts.
    actual = len(value) if isinstance(value, Sized) else ctx.get("actual_length")
    if ctx["field_type"] == "Dictionary":  # dicts only have a maximum: metadata's 16 keys
        expected, got = f"an object with at most {ctx['max_length']} properties", f"an object with {actual} properties"
        return _limit_message(quoted, "too many properties", expected, got), "object_above_max_properties"
    if kind == "too_long":
        expected, got = f"an array with maximum length {ctx['max_length']}", f"an array with length {actual}"
        return _limit_message(quoted, "array too long", expected, got), "array_above_max_length"
    expected = f"an array with minimum length {ctx['min_length']}"
    if actual == 0:
        return _limit_message(quoted, "empty array", expected, "an empty array"), "empty_array"
    got = f"an array with length {actual}"
    return _limit_message(quoted, "array too short", expected, got), "array_below_min_length"


def _limit_message(quoted: str, problem: str, expected: str, got: str) -> str:
    return f"Invalid {quoted}: {problem}. Expected {expected}, but got {got} instead."


def _type_message(quoted: str, expected: str, value: object) -> str:
    return f"Invalid type for {quoted}: expected {expected}, but got {_json_type(value)} instead."


def _value_message(value: object, supported: tuple[Any, ...]) -> str:
    names = [f"'{item}'" for item in supported]
    last = names.pop()
    listed = f"{', '.join(names)}{',' if len(names) > 1 else ''} and {last}" if names else last
    return f"Invalid value: {_short(value)}. Supported values are: {listed}."


def _expected(node: Any) -> str:
    """How a type annotation reads in a message: 'an object', 'a string or an array', ..."""
    if _is_union(node):
        return " or ".join(dict.fromkeys(_expected(_strip(member)) for member in get_args(node)))
    origin = get_origin(node)
    if node is str or origin is Literal:
        return "a string"
    if node is bool:
        return "a boolean"
    if node is int:
        return "an integer"
    if node is float:
        return "a number"
    if node is list or origin is list:
        return "an array"
    return "an object"  # models and dicts


_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "an array"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return next((name for python_type, name in _JSON_TYPES if isinstance(value, python_type)), "an object")


def _number(value: object) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
