"""Every policy rule through the HTTP surface with the official SDK: allowed, and denied with a 403
that names the rule and the param; clamps, injected defaults, facts and shadow mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.support import both_protocols, scrape, team_tenant, value

pytestmark = both_protocols

HI = {"messages": [{"role": "user", "content": "hi"}]}
FN = {"type": "function", "function": {"name": "get_weather"}}


def message(*parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"thread": {"messages": [{"role": "user", "content": list(parts), **extra}]}}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


TEXT = {"type": "text", "text": "look"}
ATTACH = {"file_id": "file-1", "tools": [{"type": "file_search"}]}

# rule id, policy, allowed call, denied call, the denial's param. `{ok}`/`{other}` are assistant ids.
RULES = [
    ("models.allow", {"models": {"allow": ["gpt-4o*"]}}, {"model": "gpt-4o"}, {"model": "gpt-3.5-turbo"}, "model"),
    ("models.deny", {"models": {"deny": ["*-mini"]}}, {"model": "gpt-4o"}, {"model": "gpt-4o-mini"}, "model"),
    ("assistants.allow", {"assistants": {"allow": ["{ok}"]}}, {}, {"assistant_id": "{other}"}, "assistant_id"),
    ("assistants.deny", {"assistants": {"deny": ["{other}"]}}, {}, {"assistant_id": "{other}"}, "assistant_id"),
    ("tools.allowed_types", {"tools": {"allowed_types": ["function"]}}, {"tools": [FN]},
     {"tools": [{"type": "code_interpreter"}]}, "tools[0].type"),
    ("tools.functions", {"tools": {"functions": ["get_*"]}}, {"tools": [FN]},
     {"tools": [{"type": "function", "function": {"name": "drop_tables"}}]}, "tools[0].function.name"),
    ("tools.max_tools", {"tools": {"max_tools": 1}}, {"tools": [FN]}, {"tools": [FN, {"type": "code_interpreter"}]},
     "tools"),
    ("tools.max_file_search_results", {"tools": {"max_file_search_results": 10}},
     {"tools": [{"type": "file_search", "file_search": {"max_num_results": 5}}]},
     {"tools": [{"type": "file_search", "file_search": {"max_num_results": 20}}]},
     "tools[0].file_search.max_num_results"),
    ("tools.tool_choice_required", {"tools": {"allow_tool_choice_required": False}},
     {"tools": [FN], "tool_choice": "auto"}, {"tools": [FN], "tool_choice": "required"}, "tool_choice"),
    ("tokens.max_prompt_tokens", {"tokens": {"max_prompt_tokens": {"max": 4000}}}, {"max_prompt_tokens": 3000},
     {"max_prompt_tokens": 5000}, "max_prompt_tokens"),
    ("tokens.max_completion_tokens", {"tokens": {"max_completion_tokens": {"max": 1000}}},
     {"max_completion_tokens": 500}, {"max_completion_tokens": 2000}, "max_completion_tokens"),
    ("sampling.temperature", {"sampling": {"temperature": {"min": 0, "max": 1}}}, {"temperature": 0.5},
     {"temperature": 1.5}, "temperature"),
    ("sampling.top_p", {"sampling": {"top_p": {"min": 0.5}}}, {"top_p": 0.9}, {"top_p": 0.2}, "top_p"),
    ("sampling.response_formats", {"sampling": {"response_formats": ["auto", "json_object"]}},
     {"response_format": {"type": "json_object"}}, {"response_format": {"type": "text"}}, "response_format.type"),
    ("content.max_messages", {"content": {"max_messages": 1}}, {"thread": HI},
     {"thread": {"messages": HI["messages"] * 2}}, "thread.messages"),
    ("content.max_text_chars", {"content": {"max_text_chars": 20}}, {"thread": HI},
     {"thread": {"messages": [{"role": "user", "content": "x" * 50}]}}, "thread.messages[0].content"),
    ("content.images", {"content": {"allow_images": False}}, message(TEXT), message(TEXT, image("https://a.b/c.png")),
     "thread.messages[0].content[1].image_url"),
    ("content.image_url_hosts", {"content": {"image_url_hosts": ["img.example.com"]}},
     message(image("https://img.example.com/a.png")), message(image("https://evil.example.net/a.png")),
     "thread.messages[0].content[0].image_url.url"),
    ("content.max_attachments", {"content": {"max_attachments": 1}}, message(TEXT, attachments=[ATTACH]),
     message(TEXT, attachments=[ATTACH, {**ATTACH, "file_id": "file-2"}]),
     "thread.messages[0].attachments[1]"),
    ("content.max_code_interpreter_files", {"content": {"max_code_interpreter_files": 1}},
     {"tool_resources": {"code_interpreter": {"file_ids": ["file-1"]}}},
     {"tool_resources": {"code_interpreter": {"file_ids": ["file-1", "file-2"]}}},
     "tool_resources.code_interpreter.file_ids[1]"),
    ("content.vector_store_helper", {"content": {"vector_store_helper": {"allowed": False}}}, {"thread": HI},
     {"thread": {**HI, "tool_resources": {"file_search": {"vector_stores": [{"file_ids": ["file-1"]}]}}}},
     "thread.tool_resources.file_search.vector_stores"),
    ("content.instructions_override", {"content": {"allow_instructions_override": False}}, {},
     {"instructions": "ignore the assistant"}, "instructions"),
    ("metadata.required", {"metadata": {"required": ["cost_center"]}}, {"metadata": {"cost_center": "cc-1"}}, {},
     "metadata.cost_center"),
    ("metadata.allowed_values", {"metadata": {"allowed_values": {"cost_center": ["cc-1"]}}},
     {"metadata": {"cost_center": "cc-1"}}, {"metadata": {"cost_center": "cc-9"}}, "metadata.cost_center"),
]  # fmt: skip


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if value.startswith("{") else value
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


# Behind the facade, assistants are the platform's: the same two, defined in the config.
PLATFORM_ASSISTANTS = {"asst_ok": {"model": "gpt-4o"}, "asst_other": {"model": "gpt-4o-mini"}}


@pytest.fixture
async def assistants(simulator, protocol) -> dict[str, str]:
    if protocol == "responses":
        return {"ok": "asst_ok", "other": "asst_other"}
    client = openai.AsyncOpenAI(base_url=str(simulator.make_url("/v1")), api_key="sk-any")
    ok, other = [await client.beta.assistants.create(model=model) for model in ("gpt-4o", "gpt-4o-mini")]
    await client.close()
    return {"ok": ok.id, "other": other.id}


@pytest.fixture
def team(make_gateway, protocol) -> Callable[[dict[str, Any]], Awaitable[tuple[Gateway, openai.AsyncOpenAI]]]:
    """A gateway for the tenant `team` under `policy`, and its client."""

    async def start(policy: dict[str, Any]) -> tuple[Gateway, openai.AsyncOpenAI]:
        platform = {"assistants": PLATFORM_ASSISTANTS} if protocol == "responses" else {}
        gateway = await make_gateway(**team_tenant(policy, **platform))
        return gateway, gateway.async_client(api_key="sk-team")

    return start


@pytest.mark.parametrize(("rule", "policy", "allowed", "denied", "param"), RULES, ids=[r[0] for r in RULES])
async def test_each_rule_allows_and_denies(team, assistants, simulator_state, rule, policy, allowed, denied, param):
    gateway, client = await team(fill(policy, assistants))
    base = {"assistant_id": assistants["ok"], "model": "gpt-4o"}
    run = await client.beta.threads.create_and_run(**{**base, **fill(allowed, assistants)})
    assert run.status == "queued"
    forwarded = len(simulator_state.requests)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.beta.threads.create_and_run(**{**base, **fill(denied, assistants)})
    error = caught.value.body
    assert (error["type"], error["code"], error["param"]) == ("permission_error", "policy_violation", param)
    assert f"[{rule}]" in error["message"] and "Policy 'team'" in error["message"]
    assert len(simulator_state.requests) == forwarded  # a denied run never reaches the upstream
    record = gateway.runs.finished[-1]
    assert (record.decision, record.violations) == ("deny", (rule,))


async def test_sibling_run_calls_are_judged_too(team, assistants):
    _gateway, client = await team({"content": {"max_messages": 1, "max_text_chars": 10}})
    thread = await client.beta.threads.create()
    extra = [{"role": "user", "content": "a"}] * 2
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.beta.threads.runs.create(thread.id, assistant_id=assistants["ok"], additional_messages=extra)
    assert caught.value.body["param"] == "additional_messages"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.beta.threads.runs.submit_tool_outputs(
            "run_x", thread_id=thread.id, tool_outputs=[{"tool_call_id": "call_1", "output": "x" * 11}]
        )
    assert caught.value.body["param"] == "tool_outputs[0].output"


async def test_every_violation_is_named(team, assistants):
    policy = {"models": {"allow": ["gpt-4o"]}, "sampling": {"temperature": {"max": 1}}, "metadata": {"required": ["cc"]}}
    _gateway, client = await team(policy)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistants["ok"], model="o3", temperature=1.5)
    message = caught.value.body["message"]
    assert all(f"[{rule}]" in message for rule in ("models.allow", "sampling.temperature", "metadata.required"))
    assert caught.value.body["param"] == "model"


async def test_clamps_and_defaults_reach_the_upstream(team, assistants, simulator_state, protocol):
    tokens = {
        "max_prompt_tokens": {"max": 4000, "action": "clamp", "default": 2000},
        "max_completion_tokens": {"max": 1000, "action": "clamp"},
    }
    gateway, client = await team({"tokens": tokens})
    raw = await client.beta.threads.with_raw_response.create_and_run(
        assistant_id=assistants["ok"], max_completion_tokens=5000
    )
    assert raw.headers["x-gateway-policy-modified"] == "max_prompt_tokens,max_completion_tokens"
    sent = orjson.loads(simulator_state.requests[-1].body)
    if protocol == "responses":  # the prompt cap is the gateway's to enforce: it counts the prompt first
        counted = [r for r in simulator_state.requests if r.path == "/v1/responses/input_tokens"]
        assert sent["max_output_tokens"] == 1000 and len(counted) == 1
    else:
        assert (sent["max_prompt_tokens"], sent["max_completion_tokens"]) == (2000, 1000)
    assert (raw.parse().max_prompt_tokens, raw.parse().max_completion_tokens) == (2000, 1000)
    assert gateway.runs.finished[-1].decision == "modify"


async def test_the_assistants_own_model_is_judged_when_the_body_omits_it(team, assistants, simulator_state, protocol):
    _gateway, client = await team({"models": {"allow": ["gpt-4o"]}})
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.beta.threads.create_and_run(assistant_id=assistants["other"])  # a gpt-4o-mini assistant
    assert caught.value.body["param"] is None and "gpt-4o-mini" in caught.value.body["message"]
    for _ in range(2):
        assert (await client.beta.threads.create_and_run(assistant_id=assistants["ok"])).status == "queued"
    lookups = [r for r in simulator_state.requests if r.method == "GET" and r.path.endswith(assistants["ok"])]
    assert len(lookups) == (1 if protocol == "assistants" else 0)  # cached; the facade's own are never looked up
    with pytest.raises(openai.NotFoundError):  # an unknown assistant: not found
        await client.beta.threads.create_and_run(assistant_id="asst_nope")


async def test_shadow_mode_forwards_and_records_the_would_be_denial(team, assistants, simulator_state):
    gateway, client = await team({"shadow": True, "models": {"allow": ["gpt-4o"]}})
    run = await client.beta.threads.create_and_run(assistant_id=assistants["ok"], model="gpt-3.5-turbo")
    assert run.status == "queued"
    assert orjson.loads(simulator_state.requests[-1].body)["model"] == "gpt-3.5-turbo"
    record = gateway.runs.finished[-1]
    assert (record.decision, record.violations, record.shadowed) == ("allow", (), ("models.allow",))
    metrics = await scrape(gateway)
    assert value(metrics, "gateway_policy_decisions_total", decision="shadow_deny", rule="models.allow", tenant="team") == 1.0


async def test_a_denied_model_never_runs_through_the_assistant(team, simulator, simulator_state, protocol):
    gateway, client = await team({"models": {"allow": ["gpt-4o"]}})
    assistant = await client.beta.assistants.create(model="gpt-4o")
    assert (await client.beta.threads.create_and_run(assistant_id=assistant.id)).model == "gpt-4o"
    sent = orjson.loads(simulator_state.requests[-1].body)
    assert sent["model"] == "gpt-4o"  # the model judged is pinned in what goes upstream
    with pytest.raises(openai.PermissionDeniedError, match="gpt-3.5-turbo"):  # through the gateway: judged itself
        await client.beta.assistants.update(assistant.id, model="gpt-3.5-turbo")
    assert (await client.beta.threads.create_and_run(assistant_id=assistant.id)).model == "gpt-4o"
    if protocol == "assistants":  # changed behind the gateway's back, within the cache's TTL
        other = await client.beta.assistants.create(model="gpt-4o")
        await client.beta.threads.create_and_run(assistant_id=other.id)
        direct = openai.AsyncOpenAI(base_url=str(simulator.make_url("/v1")), api_key="sk-any")
        await direct.beta.assistants.update(other.id, model="gpt-3.5-turbo")
        run = await client.beta.threads.create_and_run(assistant_id=other.id)
        assert run.model == "gpt-4o" and orjson.loads(simulator_state.requests[-1].body)["model"] == "gpt-4o"


async def test_an_assistant_look_up_refused_in_plain_text_is_answered_in_the_envelope(team):
    """The upstream's own parser refuses a 32 KB path in plain text (the facade answers it from its
    store): the client still gets OpenAI's envelope, never the upstream's bytes as they came."""
    _gateway, client = await team({"models": {"allow": ["gpt-4o"]}})
    with pytest.raises(openai.APIStatusError) as caught:
        await client.beta.threads.create_and_run(assistant_id="x" * 32768)
    assert caught.value.status_code < 500, caught.value.body
    assert set(caught.value.body) == {"message", "type", "param", "code"}, caught.value.body
