"""Facts the policy needs but the body does not carry: the assistant's own model.

Fetched through the upstream with the caller's upstream credential and cached per tenant with a
TTL (see `Runtime.assistant_models`). If the upstream refuses (say, 404 for an unknown assistant)
its answer goes back to the client as is, exactly as the run call itself would have been answered.
"""

from __future__ import annotations

from urllib.parse import quote

from gateway.domain import json_object
from gateway.errors import UpstreamAnswer
from gateway.pipeline.call import RunCall


async def assistant_model(call: RunCall, assistant_id: str) -> str | None:
    runtime, key = call.runtime, (call.tenant, assistant_id)
    cached = runtime.assistant_models.get(key)
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
        raise UpstreamAnswer(status, body, content_type)
    model = json_object(body).get("model")
    if isinstance(model, str):
        runtime.assistant_models[key] = model
        return model
    return None
