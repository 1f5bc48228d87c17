"""What of the caller's headers reaches the upstream: never the proxy headers an upstream might trust,
and the OpenAI organisation / project only with the caller's own key (never with the shared one)."""

from __future__ import annotations

import hashlib

from tests.support import TEAM_KEY, UPSTREAM_KEY, both_protocols, team_tenant

CHOSEN = {"OpenAI-Organization": "org-someone-else", "OpenAI-Project": "proj_someone_else", "X-Forwarded-For": "10.0.0.1",
          "Forwarded": "for=10.0.0.1", "X-Real-IP": "10.0.0.1", "X-Original-URL": "/v1/organization/users",
          "X-Rewrite-URL": "/v1/organization/users", "X-Forwarded-Host": "admin.internal"}  # fmt: skip
PROXY = [name for name in CHOSEN if not name.startswith("OpenAI-")]


@both_protocols
async def test_the_shared_key_goes_without_the_callers_org_project_or_proxy_headers(make_gateway, simulator_state):
    gateway = await make_gateway(**team_tenant())
    client = gateway.async_client(api_key=TEAM_KEY, default_headers=CHOSEN)
    thread = await client.beta.threads.create()
    await client.beta.threads.messages.list(thread.id)
    assert simulator_state.requests
    for request in simulator_state.requests:
        assert request.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert not set(CHOSEN) & set(request.headers), request.headers


async def test_the_callers_own_key_keeps_its_org_and_project(make_gateway, simulator_state):
    digest = "sha256:" + hashlib.sha256(b"sk-own-openai-key").hexdigest()
    gateway = await make_gateway(upstream={"credential": "caller"}, tenants={"team": {"keys": [digest]}})
    client = gateway.async_client(api_key="sk-own-openai-key", default_headers=CHOSEN)
    await client.beta.threads.create()
    [request] = simulator_state.requests
    assert (request.headers["OpenAI-Organization"], request.headers["OpenAI-Project"]) == ("org-someone-else", "proj_someone_else")
    assert not set(PROXY) & set(request.headers)
