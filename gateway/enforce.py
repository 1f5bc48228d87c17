"""The policy stage's edges: gather facts, ask the pure `policy.decide`, act on its decision.

Deny → 403 `policy_violation` naming every violation; clamped or injected fields → the body is
re-serialised (the only time the gateway changes one) and the fields are named in
`x-gateway-policy-modified`. Shadowed violations are recorded and the request goes on.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from .context import CALLER, REQUEST_ID, REQUEST_RUNTIME, SESSION
from .errors import PolicyViolation
from .facts import assistant_model
from .openai_types import CreateRunRequest, CreateThreadAndRunRequest, RunRequest, RunRoute
from .policy import Facts, decide, denial_message, needs_assistant_model
from .runs import RunRecord

MODIFIED_HEADER = "x-gateway-policy-modified"


async def enforce(
    request: web.Request, route: RunRoute, run_request: RunRequest, data: dict[str, object], body: bytes, record: RunRecord
) -> tuple[bytes, dict[str, str]]:
    """The body to forward and the response headers that report what the policy changed."""
    runtime = request[REQUEST_RUNTIME]
    caller = request[CALLER]
    policy = runtime.policy_for(caller.tenant)
    if policy is None:
        return body, {}
    facts = Facts()
    if needs_assistant_model(route, run_request, policy):
        assert isinstance(run_request, CreateThreadAndRunRequest | CreateRunRequest)
        session, request_id = request.app[SESSION], request[REQUEST_ID]
        model = await assistant_model(request, session, runtime, caller, request_id, run_request.assistant_id)
        facts = Facts(assistant_model=model)
    decision = decide(route, run_request, data, policy, facts)
    record.violations = tuple(v.rule for v in decision.violations)
    record.shadowed = tuple(v.rule for v in decision.shadowed)
    record.modified = decision.modified
    if not decision.allowed:
        record.decision = "deny"
        name = runtime.config.policy_name_for(caller.tenant)
        raise PolicyViolation(denial_message(decision.violations, policy=name), param=decision.violations[0].param)
    if decision.modified:
        record.decision = "modify"
        record.note_caps(decision.body)
        return orjson.dumps(decision.body), {MODIFIED_HEADER: ",".join(decision.modified)}
    record.decision = "allow"
    return body, {}
