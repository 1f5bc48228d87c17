from __future__ import annotations

import hashlib

import pytest

from gateway.auth import PASSTHROUGH_TENANT, Authenticator, fingerprint
from gateway.config import parse_config
from gateway.errors import Unauthorized

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
    assert caller.tenant == PASSTHROUGH_TENANT
    assert caller.upstream_authorization == "Bearer sk-caller"
