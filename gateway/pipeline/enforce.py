"""The policy stage's edges: gather facts, ask the pure `policy.decide`, act on its decision.

Run calls and assistants' create and update bodies (`judge_assistant`: what an assistant stores runs
on every run of it). Deny → 403 `policy_violation` naming every violation; clamped or injected fields → the body is
re-serialised (the only time the gateway changes one) and the fields are named in
`x-gateway-policy-modified`. Shadowed violations are recorded and the request goes on. The token
caps the decision leaves in force are what admission reserves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from gateway.config.policy import PolicyConfig
from gateway.domain import token_caps
from gateway.errors import PolicyViolation
from gateway.pipeline.call import RunCall
from gateway.pipeline.facts import assistant_facts
from gateway.policy.decision import Facts, decide, decide_assistant, denial_message, needs_assistant
from gateway.runtime import Runtime
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest, RunRoute, validate_run_request

MODIFIED_HEADER = "x-gateway-policy-modified"
log = structlog.get_logger("gateway.enforce")


async def enforce(call: RunCall) -> None:
    try:
        effective = await _judge(call)
    finally:
        call.tracker.decided()
    prompt, completion = token_caps(effective)
    call.caps = (prompt or 0, completion or 0)
    call.model = effective.get("model") if isinstance(effective.get("model"), str) else None


async def _judge(call: RunCall) -> Mapping[str, Any]:
    """The body that goes on (as bytes in `call.body`), after the policy had its say."""
    policy = call.runtime.policy_for(call.tenant)
    if policy is None:
        return call.data
    assert call.run_request is not None, "validate runs first"
    facts = await _facts(call, policy)
    decision = decide(call.route, call.run_request, call.data, policy, facts)
    record = call.record
    record.violations = tuple(v.rule for v in decision.violations)
    record.shadowed = tuple(v.rule for v in decision.shadowed)
    if not decision.allowed:  # (its caps would have been clamped, but nothing of it goes on: no modify)
        record.decision = "deny"
        name = call.runtime.config.policy_name_for(call.tenant)
        raise PolicyViolation(denial_message(decision.violations, policy=name), param=decision.violations[0].param)
    body = call.data
    if decision.modified:
        record.decision, record.modified = "modify", decision.modified
        record.note_caps(decision.body)
        call.headers[MODIFIED_HEADER] = ",".join(decision.modified)
        body = decision.body
    else:
        record.decision = "allow"
    if facts.assistant_model is not None and "model" not in body:
        # Judged on the assistant's model as the gateway last read it: that model runs, whatever the
        # assistant became meanwhile (an update elsewhere must not run a model the policy never saw).
        body = {**body, "model": facts.assistant_model}
    if body is not call.data:
        call.body = orjson.dumps(body)
    return body


async def _facts(call: RunCall, policy: PolicyConfig) -> Facts:
    request = call.run_request
    if request is None or not needs_assistant(call.route, request, policy):
        return Facts()
    assert isinstance(request, CreateThreadAndRunRequest | CreateRunRequest)
    return await assistant_facts(call, request.assistant_id)


# What of an assistant's body runs on every run of it: judged as a run's would be.
_ASSISTANT_FIELDS = ("model", "instructions", "tools", "tool_resources", "temperature", "top_p", "response_format")


def judge_assistant(runtime: Runtime, tenant: str, data: object) -> None:
    """An assistant's create or update body under the tenant's policy: 403 naming every violation, as
    for a run (nothing is changed: an assistant has no token caps to clamp). Shadowed rules are logged."""
    policy = runtime.policy_for(tenant)
    if policy is None or not isinstance(data, dict):
        return
    as_run = {"assistant_id": "-", **{name: data[name] for name in _ASSISTANT_FIELDS if data.get(name) is not None}}
    request = validate_run_request(RunRoute.CREATE_THREAD_AND_RUN, as_run, unknown_fields="pass")
    assert isinstance(request, CreateThreadAndRunRequest)
    decision = decide_assistant(request, as_run, policy)
    if decision.shadowed:
        log.info("policy_shadow_deny", tenant=tenant, call="assistant", rules=[v.rule for v in decision.shadowed])
    if not decision.allowed:
        name = runtime.config.policy_name_for(tenant)
        raise PolicyViolation(denial_message(decision.violations, policy=name), param=decision.violations[0].param)
