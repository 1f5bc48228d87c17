"""The request models against the official OpenAPI spec, so the transcribed models cannot drift.

For each model and the spec schema it transcribes: the same properties, the same required ones,
and the same enums and bounds where the spec states them (following `$ref` and nullable unions).
Deliberate differences are listed below, each with its reason; any other difference fails. The spec
is `../shared/openai-openapi.yaml` beside the checkout: without it this module is skipped, saying so.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.schema import parts, requests

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "openai-openapi.yaml"
if not SPEC.exists():
    pytest.skip(f"the official spec is not beside the checkout ({SPEC})", allow_module_level=True)

PAIRS: list[tuple[type[BaseModel], str]] = [
    (requests.CreateThreadAndRunRequest, "CreateThreadAndRunRequest"),
    (requests.CreateRunRequest, "CreateRunRequest"),
    (requests.SubmitToolOutputsRequest, "SubmitToolOutputsRunRequest"),
    (parts.CreateThreadRequest, "CreateThreadRequest"),
    (parts.CreateMessageRequest, "CreateMessageRequest"),
    (parts.TruncationObject, "TruncationObject"),
    (parts.FunctionTool, "AssistantToolsFunction"),
    (parts.FunctionDefinition, "FunctionObject"),
    (parts.FileSearchTool, "AssistantToolsFileSearch"),
    (parts.CodeInterpreterTool, "AssistantToolsCode"),
    (parts.ImageUrlPart, "MessageContentImageUrlObject"),
    (parts.ImageFilePart, "MessageContentImageFileObject"),
    (parts.TextPart, "MessageRequestContentTextObject"),
    (parts.ToolChoiceFunction, "AssistantsNamedToolChoice"),
    (parts.JsonSchemaFormat, "ResponseFormatJsonSchema"),
    (parts.JsonObjectFormat, "ResponseFormatJsonObject"),
    (parts.TextFormat, "ResponseFormatText"),
]
CONSTRAINTS = ("enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern")

# (schema, property, what) → why the gateway differs on purpose.
KNOWN = {
    ("AssistantsNamedToolChoice", "function", "required"):
        "split by type: ToolChoiceFunction needs `function` (the spec says so only in prose), ToolChoiceBuiltin has none",
    ("AssistantsNamedToolChoice", "type", "enum"): "the same split: this model is the `function` branch",
    ("FunctionObject", "name", "pattern"): "a limit the spec states only in its description: ^[a-zA-Z0-9_-]{1,64}$",
}  # fmt: skip


@functools.cache
def schemas() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC.open() as file:
        return yaml.load(file, Loader=loader)["components"]["schemas"]  # type: ignore[no-any-return]


def unwrap(node: Any, defs: dict[str, Any]) -> Any:
    """Follow `$ref`s and unions with one non-null branch to the node that states the constraints."""
    for _ in range(10):
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
            continue
        for key in ("anyOf", "oneOf", "allOf"):
            branches = [b for b in node.get(key, ()) if not (isinstance(b, dict) and b.get("type") == "null")]
            if key in node and len(branches) == 1:
                node = branches[0]
                break
        else:
            return node
    return node


def differences(model: type[BaseModel], name: str) -> set[tuple[str, str, str]]:
    spec = schemas()[name]
    fields = {field.alias or key: field for key, field in model.model_fields.items()}
    found = {(name, prop, "property") for prop in set(fields) ^ set(spec.get("properties") or {})}
    required = {prop for prop, field in fields.items() if field.is_required()}
    found |= {(name, prop, "required") for prop in required ^ set(spec.get("required") or ())}
    ours = model.model_json_schema(by_alias=True)
    for prop, node in (spec.get("properties") or {}).items():
        theirs, mine = unwrap(node, schemas()), unwrap(ours["properties"].get(prop, {}), ours.get("$defs", {}))
        for key in CONSTRAINTS:
            want = theirs.get(key) if isinstance(theirs, dict) else None
            got = mine.get(key) if isinstance(mine, dict) else None
            if key == "enum" and got is None and isinstance(mine, dict) and "const" in mine:
                got = [mine["const"]]
            if (set(want) != set(got)) if (key == "enum" and want and got) else want != got:
                found.add((name, prop, key))
    return found


@pytest.mark.parametrize(("model", "name"), PAIRS, ids=[name for _, name in PAIRS])
def test_the_model_says_what_the_spec_says(model: type[BaseModel], name: str) -> None:
    unexplained = differences(model, name) - set(KNOWN)
    assert not unexplained, f"{model.__name__} differs from the spec's {name}: {sorted(unexplained)}"


def test_every_known_difference_is_still_there() -> None:
    """An entry that no longer differs is a stale excuse: remove it."""
    found = set().union(*(differences(model, name) for model, name in PAIRS))
    assert set(KNOWN) <= found
