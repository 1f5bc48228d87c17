"""No spelling of a path reaches the upstream without the checks its canonical form gets: another
spelling is sent to the canonical one (308, method and body kept), one without any is 404, and the
upstream receives nothing either way. Followed, the redirect meets the run call's stages."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support import TEAM_KEY, team_tenant

POLICY = {"models": {"allow": ["gpt-4o"]}, "tools": {"allowed_types": ["function"]},
          "tokens": {"max_completion_tokens": {"max": 1000}}}  # fmt: skip
DENIED = {"assistant_id": "asst_1", "model": "o3", "max_completion_tokens": 999999, "tools": [{"type": "code_interpreter"}]}
SPELLINGS = [  # (as sent, where the gateway sends the client)
    ("/v1/threads/runs/", "/v1/threads/runs"),
    ("/v1/threads%2Fruns", "/v1/threads/runs"),
    ("/v1/threads/runs%2F", "/v1/threads/runs"),
    ("/v1/threads/runs;", "/v1/threads/runs"),
    ("/v1//threads/runs", "/v1/threads/runs"),
    ("/v1/threads/./runs", "/v1/threads/runs"),
    ("/v1/thre%61ds/runs", "/v1/threads/runs"),
    ("/v1/threads/thread_1/runs/", "/v1/threads/thread_1/runs"),
    ("/v1/threads/thread_1%2Fruns", "/v1/threads/thread_1/runs"),
    ("/v1/threads/thread_1/runs%2F", "/v1/threads/thread_1/runs"),
    ("/v1/threads/thread_1/runs/run_1/submit_tool_outputs/", "/v1/threads/thread_1/runs/run_1/submit_tool_outputs"),
    ("/v1/threads%252Fruns", None),
    ("/v1/threads/%FF/runs", None),
]
HEADERS = {"Authorization": f"Bearer {TEAM_KEY}", "OpenAI-Beta": "assistants=v2"}


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS, ids=[s for s, _ in SPELLINGS])
async def test_another_spelling_is_never_forwarded(make_gateway, simulator_state, spelling, canonical) -> None:
    gateway = await make_gateway(**team_tenant(POLICY))
    url = str(gateway.server.make_url("/")).rstrip("/") + spelling + "?trace=1"
    async with aiohttp.ClientSession() as session:
        async with session.post(aiohttp.client.URL(url, encoded=True), json=DENIED, headers=HEADERS,
                                allow_redirects=False) as response:  # fmt: skip
            body = await response.json()
    assert simulator_state.requests == []  # nothing reached the upstream
    if canonical is None:
        assert (response.status, body["error"]["code"]) == (404, "not_found")
        return
    assert (response.status, body["error"]["code"]) == (308, "non_canonical_path")
    assert response.headers["Location"] == canonical + "?trace=1"


async def test_the_redirect_followed_meets_the_policy(make_gateway, simulator_state) -> None:
    gateway = await make_gateway(**team_tenant(POLICY))
    url = str(gateway.server.make_url("/")).rstrip("/") + "/v1/threads%2Fruns"
    async with aiohttp.ClientSession() as session:
        async with session.post(aiohttp.client.URL(url, encoded=True), json=DENIED, headers=HEADERS) as response:
            body = await response.json()
    assert (response.status, body["error"]["code"]) == (403, "policy_violation")
    assert all(f"[{rule}]" in body["error"]["message"] for rule in ("models.allow", "tools.allowed_types"))
    assert simulator_state.requests == [] and gateway.runs.finished[-1].decision == "deny"  # judged and audited
