"""The policy stage: a validated run call + its tenant's policy → a decision. Pure: no I/O, no clock.

    decision = decide(route, request, body, policy, facts)
    if decision.violations: 403 with denial_message(decision.violations, policy=name)
    forward decision.body (re-serialised only if decision.modified); record decision.shadowed

The gateway calls `needs_assistant` first: when it is true the body leaves its model, tools or
instructions to the assistant, so the gateway reads the assistant into `Facts` (no model if it could
not: model rules then fail closed). A run is judged on what will run: the body's own settings, and
the assistant's where the body sends none. `decide_assistant` judges an assistant's create or update
body by the same rules, so what a tenant may not send in a run it may not store in an assistant.

Rule ids (`RULE_IDS`) and what each judges. Absent config = not judged. Unless noted, a rule only
applies to create-thread-and-run (CTR) and create-run (CR); submit_tool_outputs is only judged by
content.max_text_chars.

    models.allow / models.deny        the effective model (body `model`, else the assistant's) against
                                      globs; unknown model → violation (fail closed); deny beats allow
    assistants.allow / .deny          `assistant_id`, exact ids
    tools.allowed_types               types in `tools[]` (the assistant's when the run sends none: param
                                      `assistant_id`), in every attachment's `tools[]`, and a forced
                                      `tool_choice.type`
    tools.functions                   `tools[].function.name` and a forced `tool_choice.function.name`
    tools.max_tools                   len(`tools`)
    tools.max_file_search_results     a sent `tools[].file_search.max_num_results` over the ceiling
    tools.tool_choice_required        tool_choice "required" when allow_tool_choice_required is false
    tokens.max_prompt_tokens /        over max: reject (violation) or clamp (body gets max); omitted or
      .max_completion_tokens          null: `default` (or `max`) is injected. Injection is not a violation
    sampling.temperature / .top_p     a sent value outside [min, max]
    sampling.response_formats         "auto" or the sent response_format object's `type`
    content.max_messages              len(thread.messages) (CTR) / len(additional_messages) (CR)
    content.max_text_chars            characters of instructions + additional_instructions + message
                                      texts; on submit_tool_outputs the outputs. param: the text that
                                      crossed the limit
    content.images                    image_url / image_file parts when allow_images is false
    content.image_url_hosts           image_url.url's host against globs; no trustworthy http(s) host
                                      (data:, relative, backslash, ...) never matches
    content.max_attachments           attachments over all messages; param: the first one over
    content.max_code_interpreter_files  code_interpreter file_ids in tool_resources and
                                      thread.tool_resources + attachments given to code_interpreter
    content.vector_store_helper       thread.tool_resources.file_search.vector_stores: refused, or a
                                      store with more file_ids than max_files
    content.instructions_override     a non-null `instructions` (additional_instructions is fine), or
                                      none on an assistant whose instructions its tenant wrote
    metadata.required                 keys missing from the run's `metadata` (param metadata.<key>)
    metadata.allowed_values           a present key whose value is not listed

Shadow mode (`shadow: true`, or a rule id matching `shadow_rules`): the rule's violations go to
`Decision.shadowed` instead of `violations`, so they are recorded but never deny. A clamp under a
shadowed rule is recorded there too ("would be clamped") and the body goes as sent. Injecting an
omitted token limit is not a violation, so shadow mode does not suppress it: the policy's default
applies from the first request, and shadowing is only about what would be refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.config.policy import RULE_IDS, PolicyConfig
from gateway.policy.rules import (
    Findings,
    RunOptions,
    Violation,
    judge_assistants,
    judge_content,
    judge_metadata,
    judge_models,
    judge_sampling,
    judge_tokens,
    judge_tool_outputs,
    judge_tools,
    messages_of,
)
from gateway.schema.parts import UNKNOWN_FIELDS, Tool, Tools
from gateway.schema.requests import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    RunRequest,
    RunRoute,
    SubmitToolOutputsRequest,
)

__all__ = ["RULE_IDS", "Decision", "Facts", "Violation", "decide", "decide_assistant", "denial_message", "needs_assistant"]

_REQUEST_TYPES: dict[RunRoute, type[RunRequest]] = {
    RunRoute.CREATE_THREAD_AND_RUN: CreateThreadAndRunRequest,
    RunRoute.CREATE_RUN: CreateRunRequest,
    RunRoute.SUBMIT_TOOL_OUTPUTS: SubmitToolOutputsRequest,
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the body does not say but the policy needs: the assistant's own settings, which run
    wherever the run sends none of its own (read by the gateway beforehand)."""

    assistant_model: str | None = None
    assistant_tools: tuple[Mapping[str, Any], ...] | None = None  # as the upstream lists them; None: not read
    assistant_instructions: bool = False  # the assistant carries instructions its tenant wrote


@dataclass(frozen=True, slots=True)
class Decision:
    violations: tuple[Violation, ...]  # enforced: any → deny
    shadowed: tuple[Violation, ...]  # would deny (or clamp), but in shadow mode → forwarded anyway
    modified: tuple[str, ...]  # top-level params clamped or injected, in the order applied
    body: dict[str, Any]  # what to forward: a new dict when modified, else the caller's own

    @property
    def allowed(self) -> bool:
        return not self.violations


def needs_assistant(route: RunRoute, request: RunRequest, policy: PolicyConfig) -> bool:
    """True when a rule judges what the body leaves to the assistant (its model, tools or
    instructions): the gateway then reads the assistant into `Facts`."""
    if route is RunRoute.SUBMIT_TOOL_OUTPUTS or isinstance(request, SubmitToolOutputsRequest):
        return False
    content = policy.content
    return (
        (policy.has_model_rules and request.model is None)
        or (policy.tools is not None and request.tools is None)
        or (content is not None and not content.allow_instructions_override and request.instructions is None)
    )


def decide_assistant(request: CreateThreadAndRunRequest, body: dict[str, Any], policy: PolicyConfig) -> Decision:
    """An assistant's create or update body, judged as every run on it will be: its model, tools,
    sampling and instructions (`request` holds just those, validated as a run's; a field not sent
    is not judged, so an update leaves the rest as the assistant has it)."""
    found = Findings(policy, body)
    if policy.has_model_rules and policy.models is not None and request.model is not None:
        judge_models(request.model, True, policy.models, found)
    messages = messages_of(request)
    if policy.tools is not None:
        judge_tools(request, messages, policy.tools, found)
    if policy.sampling is not None:
        judge_sampling(request, policy.sampling, found)
    if policy.content is not None:
        judge_content(request, messages, policy.content, found)
    return Decision(tuple(found.violations), tuple(found.shadowed), (), body)


def decide(route: RunRoute, request: RunRequest, body: dict[str, Any], policy: PolicyConfig, facts: Facts) -> Decision:
    """Judge `request` (the validated model of `body`) by every rule of `policy`; `body` is never changed."""
    if not isinstance(request, _REQUEST_TYPES[route]):  # a wiring bug, not a client error
        raise TypeError(f"{route.value} expects {_REQUEST_TYPES[route].__name__}, got {type(request).__name__}")
    found = Findings(policy, body)
    if isinstance(request, SubmitToolOutputsRequest):
        if policy.content is not None and policy.content.max_text_chars is not None:
            judge_tool_outputs(request, policy.content.max_text_chars, found)
    else:
        _judge_run(request, policy, facts, found)
    return Decision(tuple(found.violations), tuple(found.shadowed), tuple(found.modified), found.body)


def _judge_run(
    request: CreateThreadAndRunRequest | CreateRunRequest, policy: PolicyConfig, facts: Facts, found: Findings
) -> None:
    # Order of the families = order of the violations reported (models first: the likeliest cause).
    if policy.has_model_rules and policy.models is not None:
        from_body = request.model is not None  # an explicit null also leaves the assistant's model
        judge_models(request.model if from_body else facts.assistant_model, from_body, policy.models, found)
    if policy.assistants is not None:
        judge_assistants(request.assistant_id, policy.assistants, found)
    messages = messages_of(request)
    if policy.tools is not None:
        judge_tools(request, messages, policy.tools, found, inherited=_inherited_tools(request, facts, found))
    if policy.tokens is not None:
        judge_tokens(request, policy.tokens, found)
    if policy.sampling is not None:
        judge_sampling(request, policy.sampling, found)
    if policy.content is not None:
        judge_content(request, messages, policy.content, found)
        if not policy.content.allow_instructions_override and request.instructions is None and facts.assistant_instructions:
            message = "the assistant carries instructions its tenant wrote, and this policy lets it write none"
            found.add("content.instructions_override", "assistant_id", message)
    if policy.metadata is not None:
        judge_metadata(request.metadata, policy.metadata, found)


_TOOLS: TypeAdapter[list[Tool]] = TypeAdapter(Tools)


def _inherited_tools(request: RunOptions, facts: Facts, found: Findings) -> list[Tool]:
    """The assistant's tools, which run when the request sends no `tools` of its own."""
    if request.tools is not None or not facts.assistant_tools:
        return []
    try:
        return _TOOLS.validate_python(list(facts.assistant_tools), context={UNKNOWN_FIELDS: "pass"})
    except ValidationError:  # a tool the gateway does not know cannot be judged: refused, as unknown models are
        found.add("tools.allowed_types", "assistant_id", "the assistant has a tool this gateway cannot judge")
        return []


def denial_message(violations: Sequence[Violation], *, policy: str | None = None) -> str:
    """One message naming every violation, for the 403's error.message."""
    who = f"Policy {policy!r}" if policy is not None else "Policy"
    reasons = "; ".join(f"[{v.rule}] {v.message}" + (f" ({v.param})" if v.param else "") for v in violations)
    return f"{who} denies this request: {reasons}"
