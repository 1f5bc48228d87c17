"""Drift test: the request models, walked as deep as they go, against the official OpenAPI spec.

`gateway/schema/requests.py` and `gateway/schema/parts.py` are transcribed by hand from the spec. This test
walks each top-level request model's JSON schema (`Model.model_json_schema()`) side by side with the spec
schema it transcribes, through every nested object, array and union (following `$ref`, `allOf` and the
`anyOf`/`oneOf` unions on both sides; union members are paired by JSON kind, and objects by their `type`
discriminator), and compares at every node:

- the property names (none of the spec's missing, none invented) and which of them are required;
- the JSON type, the string enums (a pydantic `const` is a one-value enum) and `default`;
- numeric bounds, string/array/object size bounds and `pattern`, where either side states them.

Not compared: descriptions, `format`, nullability (the models' `Omittable` cannot be told from a nullable
field in a JSON schema) and `additionalProperties: false` (the models forbid unknown keys everywhere on
purpose, with a "pass" mode of their own).

Each difference is keyed by (spec schema, path inside it, what); a key in KNOWN is expected and says why.
Deliberate differences carry their reason; real drift is marked `# DRIFT:` until someone decides. Any
other difference fails, and so does a KNOWN entry that no longer differs. The spec's request schemas (the
three run requests and every schema they reach) ship in `tests/fixtures/openai-openapi-run-requests.yaml`,
so a lone clone runs all of this; where the whole spec (`../shared/openai-openapi.yaml`) is beside the
checkout, that file is also checked to be exactly what the spec holds today.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.schema import parts, requests

# tests/schema/test_spec_drift.py → parents[0] tests/schema, [1] tests, [2] the repo root, [3] its parent.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "openai-openapi-run-requests.yaml"
SPEC = Path(__file__).resolve().parents[3] / "shared" / "openai-openapi.yaml"

PAIRS: list[tuple[type[BaseModel], str]] = [
    (requests.CreateThreadAndRunRequest, "CreateThreadAndRunRequest"),
    (requests.CreateRunRequest, "CreateRunRequest"),
    (requests.SubmitToolOutputsRequest, "SubmitToolOutputsRunRequest"),
]

CONSTRAINTS = (
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
)

# (spec schema, path inside it, what) → why the model differs. Paths: `.` a property, `[]` array items,
# `{}` map values, `{key}` map keys, `<type=x>` / `<string>` a union member.
KNOWN: dict[tuple[str, str, str], str] = {
    # --- limits the spec states only in prose, which the gateway enforces on top -------------------------
    ("Metadata", "", "maxProperties"): "Metadata: 'Set of 16 key-value pairs' (prose only in the spec)",
    ("Metadata", "{key}", "maxLength"): "Metadata: 'Keys are strings with a maximum length of 64 characters'",
    ("Metadata", "{}", "maxLength"): "Metadata: 'Values are strings with a maximum length of 512 characters'",
    ("FunctionObject", "name", "pattern"):
        "function names: 'a-z, A-Z, 0-9, underscores and dashes, maximum length of 64' (prose only)",
    ("ResponseFormatJsonSchema", "json_schema.name", "pattern"):
        "response-format names: the same prose rule as function names",
    ("CreateThreadRequest", "tool_resources.file_search.vector_stores[].chunking_strategy<type=static>"
     ".static.chunk_overlap_tokens", "minimum"):
        "a negative overlap is meaningless; the spec's prose bounds it by half of max_chunk_size_tokens, "
        "which a validator checks",
    # --- the spec's own shape, read for its intent -------------------------------------------------------
    ("AssistantsNamedToolChoice", "<type=function>.function", "required"):
        "the spec has one object for all three types and says only in prose that `function` is needed "
        "with type=function; the model splits it (ToolChoiceFunction requires it, ToolChoiceBuiltin not)",
    ("CreateMessageRequest", "attachments[].file_id", "required"):
        "the spec puts `required: [file_id, tools]` on the attachments array instead of its items",
    ("CreateMessageRequest", "attachments[].tools", "required"): "the same misplaced `required`",
    # The spec's thread file_search is `oneOf: [{required: [vector_store_ids]}, {required: [vector_stores]}]`:
    # the model says it with two validators (not both: vector_stores; not neither: the whole object).
    ("CreateThreadRequest", "tool_resources.file_search", "oneOf required"):
        "exactly one of vector_store_ids / vector_stores, enforced by validators the JSON schema cannot show",
}  # fmt: skip


@functools.cache
def spec_schemas() -> dict[str, Any]:
    with FIXTURE.open(encoding="utf-8") as file:
        schemas: dict[str, Any] = yaml.safe_load(file)
    return schemas


def reachable(schemas: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The schemas `roots` name and every schema they reach through `$ref`, by name."""
    found: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = schemas[name]
            todo += re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", yaml.safe_dump(schemas[name]))
    return dict(sorted(found.items()))


# --- normalising one JSON-schema node (spec or model) ------------------------------------------------


def resolve(node: Any, defs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Follow `$ref` and merge `allOf`; returns the name of the last named schema reached, and the node."""
    name = None
    node = dict(node) if isinstance(node, dict) else {}
    while "$ref" in node or "allOf" in node:
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[1]
            node = {**defs[name], **node}  # siblings of a $ref (nullable, description) stay
        else:
            merged: dict[str, Any] = {}
            for part in node.pop("allOf"):
                part_name, part = resolve(part, defs)
                name = part_name or name
                merged = merge(merged, part)
            node = merge(node, merged)
    return name, node


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a and "properties" in b:
        out["properties"] = {**a["properties"], **b["properties"]}
    if "required" in a and "required" in b:
        out["required"] = [*a["required"], *b["required"]]
    return out


def is_required_only(branches: list[Any]) -> bool:
    """`oneOf: [{required: [a]}, {required: [b]}]` constrains an object; it is not a union of kinds."""
    return all(isinstance(b, dict) and set(b) == {"required"} for b in branches)


def members(node: Any, defs: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """The non-null members of a (possibly nested, possibly nullable) union; a plain node is its own member."""
    name, node = resolve(node, defs)
    for key in ("anyOf", "oneOf"):
        if key in node and not is_required_only(node[key]):
            base = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            for branch in node[key]:
                for branch_name, member in members(branch, defs):
                    yield branch_name or name, {**base, **member}  # the member's own keys win
            return
    if kind(node) != "null":
        yield name, node


def kind(node: dict[str, Any]) -> str | None:
    types = node.get("type")
    if isinstance(types, list):
        types = next((t for t in types if t != "null"), "null")
    if types is None and "properties" in node:
        types = "object"
    return types


def enum_of(node: dict[str, Any]) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    return node.get("enum")


def keys_of(node: dict[str, Any]) -> list[str]:
    """How a union member is paired with its counterpart: by JSON kind, and an object by its `type` values."""
    tags = enum_of((node.get("properties") or {}).get("type") or {}) if kind(node) == "object" else None
    return [f"type={tag}" for tag in tags] if tags else [str(kind(node))]


def by_key(branches: list[tuple[str | None, dict[str, Any]]]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    grouped: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for name, node in branches:
        for key in keys_of(node):
            if key in grouped and kind(node) != "object":
                # Several members of one scalar kind (a string, or a string from a list): any string goes
                # unless each of them is an enum, then the union of the enums.
                other = grouped[key][1]
                first, second = enum_of(other), enum_of(node)
                node = (
                    {**other, **node, "enum": [*first, *second]}
                    if first and second
                    else {k: v for k, v in {**other, **node}.items() if k not in ("enum", "const")}
                )
            grouped[key] = (name, node)
    return grouped


# --- the walk ----------------------------------------------------------------------------------------


class Walk:
    """Compares a spec node with a model node, collecting {(schema, path, what): detail}."""

    def __init__(self, model: type[BaseModel]) -> None:
        ours = model.model_json_schema(by_alias=True)
        self.model_defs: dict[str, Any] = ours.get("$defs", {})
        # model_json_schema leaves out the defaults of `Field(default_factory=...)`; put them back.
        for name, node in [*self.model_defs.items(), (model.__name__, ours)]:
            for field_name, field in getattr(request_models().get(name), "model_fields", {}).items():
                if field.default_factory is not None:
                    default = field.get_default(call_default_factory=True, validated_data={})
                    node["properties"][field.alias or field_name]["default"] = default
        self.root = ours
        self.found: dict[tuple[str, str, str], str] = {}
        self.visited: set[tuple[str, str]] = set()  # (model class, spec schema) pairs compared

    def note(self, schema: str, path: str, what: str, spec: Any, ours: Any) -> None:
        self.found[(schema, path, what)] = f"spec {spec!r}, model {ours!r}"

    def node(self, spec: Any, ours: Any, schema: str, path: str, *, discriminator: bool = False) -> None:
        named, _ = resolve(spec, spec_schemas())
        if named and named != schema:  # a named union (AssistantsApiToolChoiceOption): its own keys
            schema, path = named, ""
        spec_members = list(members(spec, spec_schemas()))
        our_members = list(members(ours, self.model_defs))
        if len(spec_members) == 1 and len(our_members) == 1:
            self.pair(spec_members[0], our_members[0], schema, path, discriminator=discriminator)
            return
        theirs, mine = by_key(spec_members), by_key(our_members)
        if set(theirs) != set(mine):
            self.note(schema, path, "union members", sorted(theirs), sorted(mine))
        for key in sorted(set(theirs) & set(mine)):
            # The discriminator's values were compared just now, as the members' keys.
            self.pair(theirs[key], mine[key], schema, f"{path}<{key}>", discriminator=key.startswith("type="))

    def pair(
        self,
        spec_member: tuple[str | None, dict[str, Any]],
        our_member: tuple[str | None, dict[str, Any]],
        schema: str,
        path: str,
        *,
        discriminator: bool,
    ) -> None:
        spec_name, spec = spec_member
        our_name, ours = our_member
        if spec_name and spec_name != schema:
            # Keys are relative to the nearest named spec schema (so one difference has one key wherever
            # the schema is used); a union member's tag stays in front when the schema is several members
            # of the model's union at once (AssistantsNamedToolChoice: one object for three `type`s).
            tag = re.search(r"<[^<>]*>$", path)
            schema, path = spec_name, tag.group(0) if tag and len(keys_of(spec)) > 1 else ""
        if our_name:
            self.visited.add((our_name, schema))

        if kind(spec) and kind(ours) and kind(spec) != kind(ours):
            self.note(schema, path, "type", kind(spec), kind(ours))
        for what in CONSTRAINTS:
            want, got = spec.get(what), ours.get(what)
            if what == "enum":
                if discriminator:
                    continue
                want, got = enum_of(spec), enum_of(ours)
                want, got = (sorted(want) if want else None), (sorted(got) if got else None)
            if want != got:
                self.note(schema, path, what, want, got)

        if kind(spec) == "object" or kind(ours) == "object":
            self.object(spec, ours, schema, path, discriminator=discriminator)
        if "items" in spec or "items" in ours:
            self.node(spec.get("items", {}), ours.get("items", {}), schema, f"{path}[]")

    def object(
        self, spec: dict[str, Any], ours: dict[str, Any], schema: str, path: str, *, discriminator: bool
    ) -> None:
        theirs_props, our_props = spec.get("properties") or {}, ours.get("properties") or {}
        for prop in sorted(set(theirs_props) ^ set(our_props)):
            where = "model only" if prop in our_props else "spec only"
            self.note(schema, join(path, prop), "property", where == "spec only", where == "model only")
        theirs_req, our_req = set(spec.get("required") or ()), set(ours.get("required") or ())
        for prop in sorted((theirs_req ^ our_req) & set(theirs_props) & set(our_props)):
            self.note(schema, join(path, prop), "required", prop in theirs_req, prop in our_req)
        alternatives = next((spec[k] for k in ("oneOf", "anyOf") if is_required_only(spec.get(k) or [None])), None)
        if alternatives:
            # A JSON schema made from a pydantic model cannot state "exactly one of" (a validator does that).
            self.note(schema, path, "oneOf required", [b["required"] for b in alternatives], None)
        for prop in sorted(set(theirs_props) & set(our_props)):
            self.node(
                theirs_props[prop],
                our_props[prop],
                schema,
                join(path, prop),
                discriminator=discriminator and prop == "type",
            )
        for key, segment in (("additionalProperties", "{}"), ("propertyNames", "{key}")):
            spec_sub, our_sub = spec.get(key), ours.get(key)
            if isinstance(spec_sub, dict) or isinstance(our_sub, dict):
                spec_sub = spec_sub if isinstance(spec_sub, dict) else {}
                our_sub = our_sub if isinstance(our_sub, dict) else {}
                self.node(spec_sub, our_sub, schema, f"{path}{segment}")


def request_models() -> dict[str, type[BaseModel]]:
    """The public request models of gateway.schema, by class name (which is also their `$defs` name)."""
    return {
        cls.__name__: cls
        for module in (parts, requests)
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, parts.RequestModel)
        and cls.__module__ == module.__name__
        and not cls.__name__.startswith("_")
        and cls is not parts.RequestModel
    }


def join(path: str, prop: str) -> str:
    return f"{path}.{prop}" if path else prop


@functools.cache
def walk(model: type[BaseModel], name: str) -> Walk:
    walker = Walk(model)
    walker.visited.add((model.__name__, name))
    walker.node({"$ref": f"#/components/schemas/{name}"}, walker.root, name, "")
    return walker


# --- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "name"), PAIRS, ids=[name for _, name in PAIRS])
def test_the_model_says_what_the_spec_says(model: type[BaseModel], name: str) -> None:
    found = walk(model, name).found
    unexplained = {key: detail for key, detail in found.items() if key not in KNOWN}
    assert not unexplained, f"{model.__name__} differs from the spec's {name}:\n" + "\n".join(
        f"  {key}: {detail}" for key, detail in sorted(unexplained.items())
    )


def test_the_shipped_schemas_are_the_official_specs() -> None:
    """The fixture holds every schema it refers to; with the whole spec beside the checkout, it is exactly
    the spec's run-request schemas (refresh it with the `reachable` of this module if the spec moves on)."""
    schemas = spec_schemas()
    assert reachable(schemas, [name for _, name in PAIRS]) == schemas
    if SPEC.is_file():
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: the 3 MB spec in ~1 s
        with SPEC.open(encoding="utf-8") as file:
            official = yaml.load(file, Loader=loader)["components"]["schemas"]
        assert schemas == reachable(official, [name for _, name in PAIRS])


def test_every_known_difference_is_still_there() -> None:
    """An entry that no longer differs is a stale excuse (or the drift was fixed): remove it."""
    found = set().union(*(walk(model, name).found for model, name in PAIRS))
    assert not set(KNOWN) - found, f"stale KNOWN entries: {sorted(set(KNOWN) - found)}"


def test_the_walk_reaches_every_request_model() -> None:
    """A nested model the walk never pairs with a spec schema would be compared with nothing."""
    reached = {our for model, name in PAIRS for our, _ in walk(model, name).visited}
    defined = set(request_models())
    assert defined <= reached, f"never compared with the spec: {sorted(defined - reached)}"
