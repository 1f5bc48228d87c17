from __future__ import annotations

import hashlib

import openai
import pytest

from gateway.config import parse_config
from gateway.errors import Unauthorized
from gateway.runtime.auth import PASSTHROUGH, Authenticator, fingerprint

ENV = {"UPSTREAM": "sk-upstream", "A_KEY": "key-a"}


def authenticator() -> Authenticator:
    digest = "sha256:" + hashlib.sha256(b"key-b").hexdigest()
    raw = {
        "upstream": {"api_key": "${UPSTREAM}"},
        "tenants": {"team-a": {"keys": ["${A_KEY}"]}, "team-b": {"keys": [digest]}},
    }
    return Authenticator(parse_config(raw, env=ENV))


def test_keys_map_to_tenants_and_the_upstream_credential_is_swapped_in():
    auth = authenticator()
    a = auth.authenticate("Bearer key-a")
    b = auth.authenticate("bearer key-b")
    assert (a.tenant, b.tenant) == ("team-a", "team-b")
    assert a.upstream_authorization == b.upstream_authorization == "Bearer sk-upstream"
    assert a.fingerprint == fingerprint("key-a") and "key-a" not in a.fingerprint


@pytest.mark.parametrize("header", [None, "", "Bearer ", "Basic a2V5LWE=", "Bearer wrong"])
def test_missing_or_unknown_keys_are_401(header):
    with pytest.raises(Unauthorized) as caught:
        authenticator().authenticate(header)
    assert caught.value.status == 401
    assert caught.value.code == "invalid_api_key"


def test_passthrough_forwards_the_callers_key():
    caller = Authenticator(parse_config({}, env={})).authenticate("Bearer sk-caller")
    assert caller.tenant == PASSTHROUGH
    assert caller.upstream_authorization == "Bearer sk-caller"


def test_caller_credential_mode_keeps_the_callers_key_and_maps_its_digest():
    digest = "sha256:" + hashlib.sha256(b"sk-real-openai-key").hexdigest()
    raw = {"upstream": {"credential": "caller"}, "tenants": {"team-a": {"keys": [digest]}}}
    auth = Authenticator(parse_config(raw, env={}))
    caller = auth.authenticate("Bearer sk-real-openai-key")
    assert (caller.tenant, caller.upstream_authorization) == ("team-a", "Bearer sk-real-openai-key")
    with pytest.raises(Unauthorized):
        auth.authenticate("Bearer sk-someone-elses-key")


def test_a_tenants_own_upstream_key_wins():
    raw = {
        "upstream": {"api_key": "${UPSTREAM}"},
        "tenants": {"team-a": {"keys": ["${A_KEY}"], "upstream_api_key": "${A_UP}"}, "team-b": {"keys": ["${B}"]}},
    }
    auth = Authenticator(parse_config(raw, env={**ENV, "A_UP": "sk-a-own", "B": "key-b"}))
    assert auth.authenticate("Bearer key-a").upstream_authorization == "Bearer sk-a-own"
    assert auth.authenticate("Bearer key-b").upstream_authorization == "Bearer sk-upstream"


async def test_keys_never_reach_the_logs(make_gateway, capsys):
    gateway = await make_gateway(
        env={"UP": "sk-upstream-secret", "TEAM": "sk-team-secret"},
        upstream={"api_key": "${UP}"},
        tenants={"t": {"keys": ["${TEAM}"]}},
    )
    client = gateway.async_client(api_key="sk-team-secret")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    await client.beta.threads.create_and_run(assistant_id=assistant.id)
    with pytest.raises(openai.AuthenticationError):
        await gateway.async_client(api_key="sk-wrong-secret").beta.threads.create_and_run(assistant_id=assistant.id)
    await gateway.runs.wait()
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "run_call" in text
    assert not any(secret in text for secret in ("sk-upstream-secret", "sk-team-secret", "sk-wrong-secret"))
