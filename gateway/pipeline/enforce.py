"""The policy stage's edges: gather facts, ask the pure `policy.decide`, act on its decision.

Deny → 403 `policy_violation` naming every violation; clamped or injected fields → the body is
re-serialised (the only time the gateway changes one) and the fields are named in
`x-gateway-policy-modified`. Shadowed violations are recorded and the request goes on. The token
caps the decision leaves in force are what admission reserves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.config.policy import PolicyConfig
from gateway.domain import token_caps
from gateway.errors import PolicyViolation
from gateway.pipeline.call import RunCall
from gateway.pipeline.facts import assistant_model
from gateway.policy.decision import Facts, decide, denial_message, needs_assistant_model
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest

MODIFIED_HEADER = "x-gateway-policy-modified"


async def enforce(call: RunCall) -> None:
    try:
        effective = await _judge(call)
    finally:
        call.tracker.decided()
    prompt, completion = token_caps(effective)
    call.reserve_tokens = (prompt or 0) + (completion or 0)


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
    record.modified = decision.modified
    if not decision.allowed:
        record.decision = "deny"
        name = call.runtime.config.policy_name_for(call.tenant)
        raise PolicyViolation(denial_message(decision.violations, policy=name), param=decision.violations[0].param)
    body = call.data
    if decision.modified:
        record.decision = "modify"
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
    if request is None or not needs_assistant_model(call.route, request, policy):
        return Facts()
    assert isinstance(request, CreateThreadAndRunRequest | CreateRunRequest)
    return Facts(assistant_model=await assistant_model(call, request.assistant_id))
