"""Facts the policy needs but the body does not carry: the assistant's own model, tools and instructions.

Fetched through the upstream with the caller's upstream credential and cached per tenant with a
TTL (see `Runtime.assistant_facts`; an update or delete through the gateway drops the entry). If
the upstream refuses (say, 404 for an unknown assistant) its answer goes back to the client as the
run call itself would have been answered: its words if they are OpenAI's envelope (keys masked).
"""

from __future__ import annotations

from urllib.parse import quote

from gateway.domain import json_object
from gateway.http.relay import refusal
from gateway.pipeline.call import RunCall
from gateway.pipeline.ownership import owners_of
from gateway.policy.decision import Facts


async def assistant_facts(call: RunCall, assistant_id: str) -> Facts:
    runtime, key = call.runtime, (call.tenant, assistant_id)
    cached = runtime.assistant_facts.get(key)
    if cached is not None:
        return cached
    status, body, content_type = await runtime.upstream.fetch(
        call.session,
        f"/assistants/{quote(assistant_id, safe='')}",  # an id is never a path
        call.caller.upstream_authorization,
        request_id=call.record.request_id,
        client_headers=call.request.headers,
        state=call.state,
        tenant=call.tenant,
    )
    if status != 200:
        raise refusal(status, body, content_type)
    assistant = json_object(body)
    model, tools, instructions = assistant.get("model"), assistant.get("tools"), assistant.get("instructions")
    facts = Facts(
        assistant_model=model if isinstance(model, str) else None,
        assistant_tools=tuple(tools) if isinstance(tools, list) else (),
        assistant_instructions=bool(instructions) and await _written_by_tenant(call, assistant_id),
    )
    runtime.assistant_facts[key] = facts
    return facts


async def _written_by_tenant(call: RunCall, assistant_id: str) -> bool:
    """Whether the caller's tenant wrote the assistant (its instructions are then the tenant's words):
    one it created through the gateway, or on the facade any but the platform's own (`assistants:`)."""
    config = call.runtime.config
    if assistant_id in config.assistants:
        return False
    if config.upstream.protocol == "responses":  # the facade serves only the tenant's own and the platform's
        return True
    return (await owners_of(call.runtime, call.state, [assistant_id]))[0] == call.tenant
