"""The pure policy decision: every rule allowed and denied, clamps, injected defaults, shadow mode."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import pytest

from gateway.config.policy import PolicyConfig
from gateway.policy.decision import (
    RULE_IDS,
    Decision,
    Facts,
    Violation,
    decide,
    decide_assistant,
    denial_message,
    needs_assistant,
)
from gateway.policy.rules import image_host
from gateway.schema.requests import CreateThreadAndRunRequest, RunRoute, validate_run_request

CTR, RUN, SUBMIT = RunRoute.CREATE_THREAD_AND_RUN, RunRoute.CREATE_RUN, RunRoute.SUBMIT_TOOL_OUTPUTS


def judge(
    policy: dict[str, Any], body: dict[str, Any], route: RunRoute = CTR, facts: Facts | None = None, **kwargs: Any
) -> Decision:
    request = validate_run_request(route, body, **kwargs)
    return decide(route, request, body, PolicyConfig.model_validate(policy), facts or Facts())


def ctr(**fields: Any) -> dict[str, Any]:
    return {"assistant_id": "asst_1", **fields}


def thread(*messages: dict[str, Any], thread_fields: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    return ctr(thread={"messages": list(messages), **(thread_fields or {})}, **fields)


def user(content: Any, **fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **fields}


def fn(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def image_url(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def attachment(*tools: str) -> dict[str, Any]:
    return {"file_id": "file_1", "tools": [{"type": t} for t in tools]}


FILE_SEARCH_40 = {"type": "file_search", "file_search": {"max_num_results": 40}}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer"}}
SHOP_HOSTS = {"content": {"image_url_hosts": ["*.corp.example", "cdn.example.com"]}}


class Case(NamedTuple):
    rule: str
    policy: dict[str, Any]
    allowed: dict[str, Any]
    denied: dict[str, Any]
    param: str | None
    named: str  # what the message must name
    route: RunRoute = CTR


CASES = [
    Case(
        "models.allow",
        {"models": {"allow": ["gpt-4o*"]}},
        ctr(model="gpt-4o-mini"),
        ctr(model="gpt-4"),
        "model",
        "'gpt-4'",
    ),
    Case(
        "models.deny",
        {"models": {"deny": ["*-preview"]}},
        ctr(model="gpt-4o"),
        ctr(model="gpt-4o-preview"),
        "model",
        "gpt-4o-preview",
    ),
    Case(
        "assistants.allow",
        {"assistants": {"allow": ["asst_ok"]}},
        ctr(assistant_id="asst_ok"),
        ctr(),
        "assistant_id",
        "asst_1",
    ),
    Case(
        "assistants.deny",
        {"assistants": {"deny": ["asst_1"]}},
        ctr(assistant_id="asst_ok"),
        ctr(),
        "assistant_id",
        "asst_1",
    ),
    Case(
        "tools.allowed_types",
        {"tools": {"allowed_types": ["function"]}},
        ctr(tools=[fn("a")]),
        ctr(tools=[fn("a"), {"type": "code_interpreter"}]),
        "tools[1].type",
        "code_interpreter",
    ),
    Case(
        "tools.allowed_types",
        {"tools": {"allowed_types": ["code_interpreter"]}},
        thread(user("x", attachments=[attachment("code_interpreter")])),
        thread(user("x"), user("y", attachments=[attachment("code_interpreter", "file_search")])),
        "thread.messages[1].attachments[0].tools[1].type",
        "file_search",
    ),
    Case(
        "tools.allowed_types",
        {"tools": {"allowed_types": ["function"]}},
        {"assistant_id": "a", "additional_messages": [user("x")]},
        {"assistant_id": "a", "additional_messages": [user("x", attachments=[attachment("file_search")])]},
        "additional_messages[0].attachments[0].tools[0].type",
        "file_search",
        RUN,
    ),
    Case(
        "tools.allowed_types",
        {"tools": {"allowed_types": ["function"]}},
        ctr(tool_choice={"type": "function", "function": {"name": "a"}}),
        ctr(tool_choice={"type": "file_search"}),
        "tool_choice.type",
        "file_search",
    ),
    Case(
        "tools.functions",
        {"tools": {"functions": ["search_*", "get_weather"]}},
        ctr(tools=[fn("search_docs"), fn("get_weather")]),
        ctr(tools=[fn("search_docs"), fn("delete_all")]),
        "tools[1].function.name",
        "delete_all",
    ),
    Case(
        "tools.functions",
        {"tools": {"functions": ["search_*"]}},
        ctr(tool_choice={"type": "function", "function": {"name": "search_web"}}),
        ctr(tool_choice={"type": "function", "function": {"name": "drop_db"}}),
        "tool_choice.function.name",
        "drop_db",
    ),
    Case(
        "tools.max_tools",
        {"tools": {"max_tools": 1}},
        ctr(tools=[fn("a")]),
        ctr(tools=[fn("a"), fn("b")]),
        "tools",
        "2 tools",
    ),
    Case(
        "tools.max_file_search_results",
        {"tools": {"max_file_search_results": 20}},
        ctr(tools=[{"type": "file_search", "file_search": {"max_num_results": 20}}, {"type": "file_search"}]),
        ctr(tools=[fn("a"), FILE_SEARCH_40]),
        "tools[1].file_search.max_num_results",
        "40",
    ),
    Case(
        "tools.tool_choice_required",
        {"tools": {"allow_tool_choice_required": False}},
        ctr(tool_choice="auto"),
        ctr(tool_choice="required"),
        "tool_choice",
        "'required'",
    ),
    Case(
        "tokens.max_prompt_tokens",
        {"tokens": {"max_prompt_tokens": {"max": 20000}}},
        ctr(max_prompt_tokens=20000),
        ctr(max_prompt_tokens=20001),
        "max_prompt_tokens",
        "20001",
    ),
    Case(
        "tokens.max_completion_tokens",
        {"tokens": {"max_completion_tokens": {"max": 2000, "action": "reject"}}},
        {"assistant_id": "a", "max_completion_tokens": 256},
        {"assistant_id": "a", "max_completion_tokens": 4096},
        "max_completion_tokens",
        "4096",
        RUN,
    ),
    Case(
        "sampling.temperature",
        {"sampling": {"temperature": {"min": 0, "max": 1}}},
        ctr(temperature=1),
        ctr(temperature=1.5),
        "temperature",
        "1.5",
    ),
    Case("sampling.top_p", {"sampling": {"top_p": {"min": 0.1}}}, ctr(top_p=0.1), ctr(top_p=0.05), "top_p", "0.05"),
    Case(
        "sampling.response_formats",
        {"sampling": {"response_formats": ["auto", "text", "json_schema"]}},
        ctr(response_format=JSON_SCHEMA),
        ctr(response_format={"type": "json_object"}),
        "response_format.type",
        "json_object",
    ),
    Case(
        "sampling.response_formats",
        {"sampling": {"response_formats": ["text"]}},
        ctr(response_format={"type": "text"}),
        ctr(response_format="auto"),
        "response_format",
        "'auto'",
    ),
    Case(
        "content.max_messages",
        {"content": {"max_messages": 2}},
        thread(user("a"), user("b")),
        thread(user("a"), user("b"), user("c")),
        "thread.messages",
        "3 messages",
    ),
    Case(
        "content.max_messages",
        {"content": {"max_messages": 0}},
        {"assistant_id": "a", "additional_messages": []},
        {"assistant_id": "a", "additional_messages": [user("x")]},
        "additional_messages",
        "1 messages",
        RUN,
    ),
    Case(
        "content.max_text_chars",
        {"content": {"max_text_chars": 10}},
        thread(user("hello"), user("world")),
        thread(user("hello"), user("world!")),
        "thread.messages[1].content",
        "11 characters",
    ),
    Case(
        "content.max_text_chars",
        {"content": {"max_text_chars": 10}},
        thread(user([{"type": "text", "text": "0123456789"}, image_url("https://x.example/a.png")])),
        thread(user([image_url("https://x.example/a.png"), {"type": "text", "text": "0123456789x"}])),
        "thread.messages[0].content[1].text",
        "11 characters",
    ),
    Case(
        "content.max_text_chars",
        {"content": {"max_text_chars": 10}},
        {"assistant_id": "a", "additional_instructions": "12345", "additional_messages": [user("12345")]},
        {
            "assistant_id": "a",
            "instructions": "1234",
            "additional_instructions": "1234567",
            "additional_messages": [user("1")],
        },
        "additional_instructions",
        "12 characters",
        RUN,
    ),
    Case(
        "content.max_text_chars",
        {"content": {"max_text_chars": 10}},
        {"tool_outputs": [{"tool_call_id": "c1", "output": "12345"}, {"tool_call_id": "c2", "output": "12345"}]},
        {"tool_outputs": [{"tool_call_id": "c1", "output": "12345"}, {"tool_call_id": "c2", "output": "123456"}]},
        "tool_outputs[1].output",
        "11 characters",
        SUBMIT,
    ),
    Case(
        "content.images",
        {"content": {"allow_images": False}},
        thread(user([{"type": "text", "text": "hi"}])),
        thread(user([{"type": "text", "text": "hi"}, {"type": "image_file", "image_file": {"file_id": "file_1"}}])),
        "thread.messages[0].content[1].image_file",
        "image_file",
    ),
    Case(
        "content.image_url_hosts",
        SHOP_HOSTS,
        thread(user([image_url("https://img.corp.example/a.png"), image_url("https://CDN.example.com:8443/b.png")])),
        thread(user([image_url("https://cdn.example.com/a.png"), image_url("https://evil.example/a.png")])),
        "thread.messages[0].content[1].image_url.url",
        "evil.example",
    ),
    Case(
        "content.image_url_hosts",
        SHOP_HOSTS,
        thread(user("no images at all")),
        thread(user([image_url("data:image/png;base64,iVBORw0KGgo=")])),
        "thread.messages[0].content[0].image_url.url",
        "no host",
    ),
    Case(
        "content.max_attachments",
        {"content": {"max_attachments": 1}},
        thread(user("a", attachments=[attachment("file_search")])),
        thread(user("a", attachments=[attachment("file_search")]), user("b", attachments=[attachment("file_search")])),
        "thread.messages[1].attachments[0]",
        "2 attachments",
    ),
    Case(
        "content.max_code_interpreter_files",
        {"content": {"max_code_interpreter_files": 2}},
        ctr(tool_resources={"code_interpreter": {"file_ids": ["f1", "f2"]}}),
        ctr(
            tool_resources={"code_interpreter": {"file_ids": ["f1"]}},
            thread={
                "tool_resources": {"code_interpreter": {"file_ids": ["f2"]}},
                "messages": [user("x", attachments=[attachment("code_interpreter")])],
            },
        ),
        "thread.messages[0].attachments[0]",
        "3 code_interpreter files",
    ),
    Case(
        "content.vector_store_helper",
        {"content": {"vector_store_helper": {"allowed": False}}},
        thread(user("x"), thread_fields={"tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}}),
        thread(user("x"), thread_fields={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["f1"]}]}}}),
        "thread.tool_resources.file_search.vector_stores",
        "vector store",
    ),
    Case(
        "content.vector_store_helper",
        {"content": {"vector_store_helper": {"max_files": 1}}},
        thread(thread_fields={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["f1"]}]}}}),
        thread(thread_fields={"tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["f1", "f2"]}]}}}),
        "thread.tool_resources.file_search.vector_stores[0].file_ids",
        "2 files",
    ),
    Case(
        "content.instructions_override",
        {"content": {"allow_instructions_override": False}},
        {"assistant_id": "a", "additional_instructions": "be brief", "instructions": None},
        {"assistant_id": "a", "instructions": ""},
        "instructions",
        "instructions",
        RUN,
    ),
    Case(
        "metadata.required",
        {"metadata": {"required": ["cost_center"]}},
        ctr(metadata={"cost_center": "cc-1"}),
        ctr(metadata={"team": "x"}),
        "metadata.cost_center",
        "'cost_center'",
    ),
    Case(
        "metadata.allowed_values",
        {"metadata": {"allowed_values": {"cost_center": ["cc-100", "cc-200"]}}},
        ctr(metadata={"team": "x"}),
        ctr(metadata={"cost_center": "cc-999"}),
        "metadata.cost_center",
        "cc-999",
    ),
]


def test_the_table_covers_every_rule() -> None:
    assert {case.rule for case in CASES} == set(RULE_IDS)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}:{c.param}" for c in CASES])
def test_rule_allows_and_denies(case: Case) -> None:
    allowed = judge(case.policy, case.allowed, case.route)
    assert (allowed.violations, allowed.shadowed) == ((), ())

    denied = judge(case.policy, case.denied, case.route)
    assert not denied.allowed
    assert [(v.rule, v.param) for v in denied.violations] == [(case.rule, case.param)]
    assert case.named in denied.violations[0].message
    assert denied.shadowed == ()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}:{c.param}" for c in CASES])
def test_a_shadowed_rule_only_records(case: Case) -> None:
    denied = judge({**case.policy, "shadow_rules": [case.rule]}, case.denied, case.route)
    assert denied.allowed and denied.violations == ()
    assert [(v.rule, v.param) for v in denied.shadowed] == [(case.rule, case.param)]


@pytest.mark.parametrize(
    "url, host",
    [
        ("https://Img.Corp.Example:443/a.png", "img.corp.example"),
        ("http://user:pw@cdn.example.com/x", "cdn.example.com"),
        ("data:image/png;base64,AAAA", None),
        ("/relative/path.png", None),
        ("ftp://cdn.example.com/a.png", None),
        ("https://evil.example\\@cdn.example.com/a.png", None),  # WHATWG reads the host as evil.example
        ("https://cdn.example.com /a.png", None),
        ("https://[::1/a.png", None),
    ],
)
def test_image_host_fails_closed(url: str, host: str | None) -> None:
    assert image_host(url) == host


def test_host_globs_do_not_match_a_lookalike() -> None:
    body = thread(user([image_url("https://cdn.example.com.evil.example/a.png"), image_url("https://corp.example/a")]))
    found = judge(SHOP_HOSTS, body).violations
    assert [v.param for v in found] == [
        "thread.messages[0].content[0].image_url.url",
        "thread.messages[0].content[1].image_url.url",
    ]


# --- tokens: clamp and injection ------------------------------------------------------------

CLAMP = {"tokens": {"max_completion_tokens": {"max": 2000, "action": "clamp"}}}


def test_clamp_modifies_a_copy_and_lists_the_param() -> None:
    body = thread(user("hi"), max_completion_tokens=5000)
    original = copy.deepcopy(body)
    decision = judge(CLAMP, body)
    assert decision.allowed and decision.violations == decision.shadowed == ()
    assert decision.modified == ("max_completion_tokens",)
    assert decision.body["max_completion_tokens"] == 2000
    assert body == original and decision.body is not body
    assert decision.body["thread"] is body["thread"]  # a shallow copy: nested values are shared


def test_within_max_nothing_is_modified() -> None:
    body = ctr(max_completion_tokens=2000, max_prompt_tokens=300)
    decision = judge({**CLAMP, "tokens": {**CLAMP["tokens"], "max_prompt_tokens": {"max": 1000}}}, body)
    assert decision.modified == () and decision.body is body


@pytest.mark.parametrize("route, body", [(CTR, ctr()), (RUN, {"assistant_id": "a", "max_prompt_tokens": None})])
def test_an_omitted_or_null_limit_gets_the_default(route: RunRoute, body: dict[str, Any]) -> None:
    policy = {
        "tokens": {
            "max_prompt_tokens": {"max": 20000, "action": "clamp", "default": 8000},
            "max_completion_tokens": {"max": 2000},
        }
    }
    decision = judge(policy, body, route)
    assert decision.allowed
    assert decision.modified == ("max_prompt_tokens", "max_completion_tokens")
    assert (decision.body["max_prompt_tokens"], decision.body["max_completion_tokens"]) == (8000, 2000)
    assert "max_completion_tokens" not in body and body.get("max_prompt_tokens") is None


def test_tokens_rules_do_not_touch_submit_tool_outputs() -> None:
    body = {"tool_outputs": [{"tool_call_id": "c", "output": "x"}]}
    decision = judge(CLAMP, body, SUBMIT)
    assert decision.modified == () and decision.body is body


def test_a_modified_body_keeps_fields_passed_through_unknown() -> None:
    body = ctr(max_completion_tokens=9000, vendor_extension={"x": 1})
    decision = judge(CLAMP, body, unknown_fields="pass")
    assert decision.body == {**body, "max_completion_tokens": 2000}


# --- shadow mode ----------------------------------------------------------------------------


def test_a_shadow_policy_denies_nothing_and_records_everything() -> None:
    policy = {"shadow": True, "models": {"allow": ["gpt-4o"]}, "tools": {"max_tools": 0}, **CLAMP}
    body = ctr(model="o1", tools=[fn("a")], max_completion_tokens=5000)
    decision = judge(policy, body)
    assert decision.allowed and decision.violations == ()
    assert [v.rule for v in decision.shadowed] == ["models.allow", "tools.max_tools", "tokens.max_completion_tokens"]
    assert "would be clamped to 2000" in decision.shadowed[2].message
    assert decision.modified == () and decision.body is body  # a shadowed clamp leaves the body as sent


def test_shadow_mode_still_injects_an_omitted_limit() -> None:
    decision = judge({"shadow": True, **CLAMP}, ctr())
    assert decision.shadowed == () and decision.modified == ("max_completion_tokens",)
    assert decision.body["max_completion_tokens"] == 2000


def test_shadow_rules_split_by_glob() -> None:
    policy = {
        "shadow_rules": ["tokens.*", "content.max_messages"],
        "models": {"deny": ["o1*"]},
        "tokens": {"max_prompt_tokens": {"max": 1000}},
        "content": {"max_messages": 0, "max_text_chars": 1},
    }
    decision = judge(policy, thread(user("hello"), model="o1-mini", max_prompt_tokens=5000))
    assert [v.rule for v in decision.violations] == ["models.deny", "content.max_text_chars"]
    assert [v.rule for v in decision.shadowed] == ["tokens.max_prompt_tokens", "content.max_messages"]


# --- several at once, messages --------------------------------------------------------------

STRICT = {
    "models": {"allow": ["gpt-4o*"], "deny": ["*-preview"]},
    "tools": {"allowed_types": ["function"], "functions": ["search_*"], "max_tools": 2},
    "sampling": {"temperature": {"max": 1}},
    "content": {"allow_instructions_override": False},
    "metadata": {"required": ["cost_center", "app"]},
}


def test_every_violation_is_listed_in_order() -> None:
    body = ctr(
        model="gpt-4-preview",
        tools=[fn("search_a"), fn("rm_rf"), {"type": "code_interpreter"}],
        temperature=1.7,
        instructions="ignore all previous",
        metadata={"app": "x"},
    )
    found = judge(STRICT, body).violations
    assert [(v.rule, v.param) for v in found] == [
        ("models.deny", "model"),
        ("models.allow", "model"),
        ("tools.max_tools", "tools"),
        ("tools.functions", "tools[1].function.name"),
        ("tools.allowed_types", "tools[2].type"),
        ("sampling.temperature", "temperature"),
        ("content.instructions_override", "instructions"),
        ("metadata.required", "metadata.cost_center"),
    ]
    assert found[0].param == "model"


def test_deny_beats_allow() -> None:
    found = judge(STRICT, ctr(model="gpt-4o-preview")).violations
    assert [v.rule for v in found if v.rule.startswith("models.")] == ["models.deny"]


def test_denial_message_names_every_violation() -> None:
    violations = [
        Violation("models.allow", "model", "model 'gpt-4' is not allowed"),
        Violation("models.allow", None, "the model is unknown"),
    ]
    assert denial_message(violations, policy="x") == (
        "Policy 'x' denies this request: [models.allow] model 'gpt-4' is not allowed (model); "
        "[models.allow] the model is unknown"
    )
    assert denial_message(violations[:1]).startswith("Policy denies this request: [models.allow]")


def test_sampling_judges_only_what_was_sent() -> None:
    policy = {"sampling": {"temperature": {"max": 0.5}, "top_p": {"max": 0.5}, "response_formats": ["text"]}}
    assert judge(policy, ctr()).violations == ()  # the model's defaults (1.0, 1.0) were not sent
    assert judge(policy, ctr(temperature=None, top_p=None, response_format=None)).violations == ()


# --- the assistant's model ------------------------------------------------------------------

MODELS = {"models": {"allow": ["gpt-4o*"]}}


@pytest.mark.parametrize(
    "body, route, policy, needed",
    [
        (ctr(), CTR, MODELS, True),
        (ctr(model=None), CTR, MODELS, True),
        ({"assistant_id": "a"}, RUN, {"models": {"deny": ["o1*"]}}, True),
        (ctr(model="gpt-4o"), CTR, MODELS, False),
        (ctr(), CTR, {"models": {}}, False),
        (ctr(), CTR, {"tools": {"max_tools": 1}}, True),  # the assistant's tools run
        (ctr(model="gpt-4o", tools=[]), CTR, {"tools": {"max_tools": 1}, **MODELS}, False),
        (ctr(model="gpt-4o"), CTR, {"content": {"allow_instructions_override": False}}, True),
        (ctr(model="gpt-4o", instructions="x"), CTR, {"content": {"allow_instructions_override": False}}, False),
        ({"tool_outputs": []}, SUBMIT, MODELS, False),
    ],
)
def test_needs_assistant(body: dict[str, Any], route: RunRoute, policy: dict[str, Any], needed: bool) -> None:
    request = validate_run_request(route, body)
    assert needs_assistant(route, request, PolicyConfig.model_validate(policy)) is needed


def test_the_assistants_model_is_judged_when_the_body_has_none() -> None:
    assert judge(MODELS, ctr(), facts=Facts("gpt-4o-mini")).violations == ()
    (found,) = judge(MODELS, ctr(model=None), facts=Facts("gpt-3.5-turbo")).violations
    assert (found.rule, found.param) == ("models.allow", None)
    assert "the assistant's model 'gpt-3.5-turbo'" in found.message
    # the body's model wins over the assistant's
    assert judge(MODELS, ctr(model="gpt-4o"), facts=Facts("gpt-3.5-turbo")).violations == ()


def test_an_unknown_model_fails_closed() -> None:
    found = judge({"models": {"allow": ["*"], "deny": ["o1*"]}}, ctr(), facts=Facts(None)).violations
    assert [(v.rule, v.param) for v in found] == [("models.allow", None), ("models.deny", None)]
    assert "unknown" in found[0].message


def test_an_empty_policy_allows_everything_untouched() -> None:
    body = thread(user([image_url("data:,x")]), tools=[fn("x")], instructions="y", temperature=2)
    decision = judge({}, body)
    assert decision == Decision((), (), (), body) and decision.body is body


def test_a_route_that_does_not_match_the_request_is_a_wiring_error() -> None:
    request = validate_run_request(CTR, ctr())
    with pytest.raises(TypeError, match="create_run"):
        decide(RUN, request, ctr(), PolicyConfig(), Facts())


TOOLS_RULES = {"tools": {"allowed_types": ["function"], "functions": ["lookup_*"], "max_tools": 2}}
CODE = {"type": "code_interpreter"}
LOOKUP = {"type": "function", "function": {"name": "lookup_order", "strict": True, "parameters": {}}}


def test_a_run_that_sends_no_tools_is_judged_on_the_assistants() -> None:
    found = judge(TOOLS_RULES, ctr(model="gpt-4o"), facts=Facts("gpt-4o", (LOOKUP, CODE))).violations
    assert [(v.rule, v.param) for v in found] == [("tools.allowed_types", "assistant_id")]
    assert "the assistant's tool type 'code_interpreter'" in found[0].message
    # the run's own tools replace the assistant's
    assert judge(TOOLS_RULES, ctr(model="gpt-4o", tools=[LOOKUP]), facts=Facts("gpt-4o", (CODE,))).violations == ()
    assert judge(TOOLS_RULES, ctr(model="gpt-4o"), facts=Facts("gpt-4o", (LOOKUP,))).violations == ()


def test_an_assistant_tool_the_gateway_cannot_read_fails_closed() -> None:
    (found,) = judge(TOOLS_RULES, ctr(model="gpt-4o"), facts=Facts("gpt-4o", ({"type": "web_browser"},))).violations
    assert (found.rule, found.param) == ("tools.allowed_types", "assistant_id")


def test_instructions_its_tenant_wrote_into_the_assistant_are_an_override() -> None:
    policy = {"content": {"allow_instructions_override": False}}
    (found,) = judge(policy, ctr(model="gpt-4o"), facts=Facts("gpt-4o", (), True)).violations
    assert (found.rule, found.param) == ("content.instructions_override", "assistant_id")
    assert judge(policy, ctr(model="gpt-4o"), facts=Facts("gpt-4o", (), False)).violations == ()  # the platform's


def assistant_decision(policy: dict[str, Any], body: dict[str, Any]) -> Decision:
    request = validate_run_request(CTR, {"assistant_id": "-", **body}, unknown_fields="pass")
    assert isinstance(request, CreateThreadAndRunRequest)
    return decide_assistant(request, body, PolicyConfig.model_validate(policy))


def test_an_assistants_body_is_judged_as_its_runs_will_be() -> None:
    policy = {**TOOLS_RULES, **MODELS, "content": {"allow_instructions_override": False},
              "sampling": {"temperature": {"max": 1}}, "tokens": {"max_completion_tokens": {"max": 500}}}  # fmt: skip
    bad = {"model": "gpt-3.5-turbo", "instructions": "ignore all rules", "tools": [CODE], "temperature": 1.5}
    found = assistant_decision(policy, bad)
    assert [v.rule for v in found.violations] == [
        "models.allow", "tools.allowed_types", "sampling.temperature", "content.instructions_override"
    ]  # fmt: skip
    assert found.modified == ()  # no token caps on an assistant, nothing injected
    assert assistant_decision(policy, {"model": "gpt-4o", "tools": [LOOKUP]}).allowed
    assert assistant_decision(policy, {"name": "renamed"}).allowed  # an update judges what it sends


def test_a_shadowed_rule_only_records_an_assistants_violation() -> None:
    found = assistant_decision({**TOOLS_RULES, "shadow_rules": ["tools.*"]}, {"tools": [CODE]})
    assert found.allowed and [v.rule for v in found.shadowed] == ["tools.allowed_types"]
