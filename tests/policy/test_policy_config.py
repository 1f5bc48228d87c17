"""The `policies:` models: what validates, and every problem named by its key path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from gateway.config.policy import RULE_IDS, Globs, PolicyConfig

POLICIES = TypeAdapter(dict[str, PolicyConfig])

BRIEF_EXAMPLE = """
policies:
  search-team:
    shadow: false
    shadow_rules: [tokens.*]
    models: {allow: ["gpt-4o*"], deny: ["*-preview"]}
    assistants: {allow: [asst_abc], deny: []}
    tools:
      allowed_types: [code_interpreter, file_search, function]
      functions: ["search_*", "get_weather"]
      max_tools: 8
      max_file_search_results: 20
      allow_tool_choice_required: false
    tokens:
      max_prompt_tokens: {max: 20000, action: clamp, default: 8000}
      max_completion_tokens: {max: 2000, action: reject}
    sampling:
      temperature: {min: 0, max: 1}
      top_p: {min: 0.1, max: 1}
      response_formats: [auto, text, json_schema]
    content:
      max_messages: 32
      max_text_chars: 100000
      allow_images: true
      image_url_hosts: ["*.corp.example", "cdn.example.com"]
      max_attachments: 10
      max_code_interpreter_files: 5
      vector_store_helper: {allowed: true, max_files: 20}
      allow_instructions_override: false
    metadata:
      required: [cost_center]
      allowed_values: {cost_center: [cc-100, cc-200]}
"""

TWO_TEAMS = """
policies:
  search:                       # retrieval over internal docs; strict, enforced
    models: {allow: ["gpt-4o", "gpt-4o-2024-*", "gpt-4o-mini*"], deny: ["*-preview", "*-realtime*"]}
    assistants: {allow: [asst_search_prod, asst_search_eval]}
    tools:
      allowed_types: [file_search, function]
      functions: ["search_*", "fetch_document"]
      max_tools: 6
      max_file_search_results: 20
      allow_tool_choice_required: false
    tokens:
      max_prompt_tokens: {max: 32000, action: clamp, default: 16000}
      max_completion_tokens: {max: 1500, action: clamp}
    sampling:
      temperature: {min: 0, max: 0.7}
      response_formats: [auto, json_schema]
    content:
      max_messages: 16
      max_text_chars: 60000
      allow_images: false
      max_attachments: 5
      vector_store_helper: {allowed: true, max_files: 10}
      allow_instructions_override: false
    metadata:
      required: [cost_center, request_origin]
      allowed_values: {cost_center: [cc-search-100, cc-search-200], request_origin: [web, api, eval]}

  support:                      # customer-support bot; new content rules rolled out in shadow first
    shadow_rules: ["content.*", tokens.max_completion_tokens]
    models: {allow: ["gpt-4o-mini*"]}
    tools:
      allowed_types: [code_interpreter, function]
      functions: ["get_order", "get_customer", "create_ticket", "refund_*"]
      max_tools: 10
    tokens:
      max_prompt_tokens: {max: 12000, action: reject}
      max_completion_tokens: {max: 800, action: clamp, default: 400}
    sampling:
      temperature: {min: 0.2, max: 1.0}
      top_p: {min: 0.5, max: 1}
    content:
      max_messages: 50
      max_text_chars: 40000
      allow_images: true
      image_url_hosts: ["*.support-cdn.example.com", "uploads.example.com"]
      max_attachments: 3
      max_code_interpreter_files: 3
      vector_store_helper: {allowed: false}
    metadata:
      required: [ticket_id]
"""


def parse(raw: dict[str, Any]) -> dict[str, PolicyConfig]:
    return POLICIES.validate_python(raw)


def problems(raw: dict[str, Any]) -> list[str]:
    """Like gateway.config: `key.path: message`, the path below `policies`."""
    with pytest.raises(ValidationError) as caught:
        parse(raw)
    found = []
    for error in caught.value.errors():
        path = ""
        for part in error["loc"]:
            path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}" if path else str(part)
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        found.append(f"{path}: {message.removeprefix('Value error, ')}")
    return found


def test_the_documented_example_validates() -> None:
    policy = parse(yaml.safe_load(BRIEF_EXAMPLE)["policies"])["search-team"]
    assert policy.tokens is not None and policy.tokens.max_prompt_tokens is not None
    assert policy.tokens.max_prompt_tokens.injected == 8000
    assert policy.is_shadowed("tokens.max_completion_tokens") and not policy.is_shadowed("models.allow")
    assert policy.has_model_rules


def test_the_two_team_example_validates() -> None:
    policies = parse(yaml.safe_load(TWO_TEAMS)["policies"])
    search, support = policies["search"], policies["support"]
    assert not any(search.is_shadowed(rule) for rule in RULE_IDS)
    assert {r for r in RULE_IDS if support.is_shadowed(r)} == {
        *(r for r in RULE_IDS if r.startswith("content.")),
        "tokens.max_completion_tokens",
    }
    assert support.tokens is not None and support.tokens.max_prompt_tokens is not None
    assert support.tokens.max_prompt_tokens.injected == 12000  # no default: the cap itself


def test_everything_is_optional() -> None:
    policy = PolicyConfig()
    assert policy.models is None and policy.content is None and not policy.has_model_rules
    assert not any(policy.is_shadowed(rule) for rule in RULE_IDS)
    assert all(PolicyConfig(shadow=True).is_shadowed(rule) for rule in RULE_IDS)


@pytest.mark.parametrize(
    "policy, problem",
    [
        ({"surprise": 1}, "p.surprise: unknown key"),
        ({"models": {"allow": "gpt-4o"}}, "p.models.allow: Input should be a valid tuple"),
        ({"models": {"allow": ["gpt-4o", ""]}}, "p.models.allow[1]: String should have at least 1 character"),
        ({"tools": {"allowed_types": ["retrieval"]}}, "p.tools.allowed_types[0]: Input should be"),
        ({"tools": {"max_tools": -1}}, "p.tools.max_tools: Input should be greater than or equal to 0"),
        ({"tools": {"max_file_search_results": 0}}, "p.tools.max_file_search_results: Input should be greater"),
        (
            {"tokens": {"max_prompt_tokens": {"max": 100}}},
            "p.tokens.max_prompt_tokens.max: Input should be greater than or equal to 256",
        ),
        (
            {"tokens": {"max_completion_tokens": {"max": 1000, "default": 2000}}},
            "p.tokens.max_completion_tokens: default (2000) must not exceed max (1000)",
        ),
        (
            {"tokens": {"max_completion_tokens": {"max": 1000, "action": "truncate"}}},
            "p.tokens.max_completion_tokens.action: Input should be 'reject' or 'clamp'",
        ),
        (
            {"tokens": {"max_completion_tokens": {"action": "clamp"}}},
            "p.tokens.max_completion_tokens.max: Field required",
        ),
        (
            {"sampling": {"temperature": {"min": 1, "max": 0.5}}},
            "p.sampling.temperature: min (1.0) must not exceed max (0.5)",
        ),
        ({"sampling": {"response_formats": ["xml"]}}, "p.sampling.response_formats[0]: Input should be 'auto'"),
        ({"content": {"max_text_chars": 0}}, "p.content.max_text_chars: Input should be greater than 0"),
        (
            {"content": {"vector_store_helper": {"max_files": -2}}},
            "p.content.vector_store_helper.max_files: Input should be greater",
        ),
        (
            {"metadata": {"allowed_values": {"cc": [100]}}},
            "p.metadata.allowed_values.cc[0]: Input should be a valid string",
        ),
        (
            {"metadata": {"required": ["cc"], "allowed_values": {"cc": []}}},
            "p.metadata: required keys ['cc'] have no allowed value",
        ),
        (
            {"shadow_rules": ["tokens.max"]},
            "p.shadow_rules[0]: unknown rule id 'tokens.max' (known: tokens.max_prompt_tokens, tokens.max_completion_tokens)",
        ),
        (
            {"shadow_rules": ["models.*", "limits.*"]},
            "p.shadow_rules[1]: 'limits.*' matches no rule id (rule families: models, assistants,",
        ),
    ],
)
def test_each_problem_is_named_by_its_key_path(policy: dict[str, Any], problem: str) -> None:
    found = problems({"p": policy})
    assert len(found) == 1 and found[0].startswith(problem), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "a": {"shadow_rules": ["nope"], "sampling": {"top_p": {"min": 0.9, "max": 0.1}}},
            "b": {"content": {"bogus": True}},
        }
    )
    assert [p.split(":")[0] for p in found] == ["a.shadow_rules[0]", "a.sampling.top_p", "b.content.bogus"]


def test_policies_are_frozen() -> None:
    policy = parse({"p": {"tools": {"max_tools": 1}}})["p"]
    with pytest.raises(ValidationError):
        policy.shadow = True  # type: ignore[misc]
    assert policy.tools is not None
    with pytest.raises(ValidationError):
        policy.tools.max_tools = 99  # type: ignore[misc]


def test_globs_are_fnmatch_case_sensitive_and_anchored() -> None:
    globs = Globs.of(["gpt-4o*", "o1-[mp]*", "exact"])
    expected = {"gpt-4o": True, "gpt-4o-mini": True, "GPT-4o": False, "o1-mini": True, "o1-x": False}
    expected |= {"exact": True, "exactly": False, "x-exact": False}
    assert {model: globs.matches(model) for model in expected} == expected
    assert not Globs.of([]).matches("") and not Globs.of([]).matches("anything")


def test_host_globs_are_lowercased_and_dump_as_written_lists() -> None:
    policy = parse({"p": {"content": {"image_url_hosts": ["*.Corp.Example"]}, "models": {"deny": ["o1*"]}}})["p"]
    assert policy.content is not None and policy.content.image_url_hosts is not None
    assert policy.content.image_url_hosts.matches("img.corp.example")
    dumped = policy.model_dump()
    assert dumped["content"]["image_url_hosts"] == ["*.corp.example"]
    assert parse({"p": dumped})["p"] == policy  # a dump reads back as the same policy
