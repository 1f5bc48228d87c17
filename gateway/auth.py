"""The authenticate stage: caller key → tenant, and the credential that goes upstream.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key, so
timing says nothing about which key, or how much of one, matched. Only a short fingerprint of a
key is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .config import Config
from .errors import Unauthorized

PASSTHROUGH_TENANT = "passthrough"


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    fingerprint: str | None
    upstream_authorization: str | None


def fingerprint(key: str) -> str:
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _digest(key: str) -> bytes:
    if key.startswith("sha256:"):
        return bytes.fromhex(key.removeprefix("sha256:"))
    return hashlib.sha256(key.encode()).digest()


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authenticator:
    def __init__(self, config: Config) -> None:
        self._passthrough = config.tenants is None
        self._keys = [
            (_digest(key.get_secret_value()), tenant)
            for tenant, tenant_config in (config.tenants or {}).items()
            for key in tenant_config.keys
        ]
        api_key = config.upstream.api_key
        self._upstream = None if api_key is None else f"Bearer {api_key.get_secret_value()}"

    def authenticate(self, authorization: str | None) -> Caller:
        key = _bearer(authorization)
        if self._passthrough:
            # The upstream judges the caller's own key; a configured api_key still wins.
            return Caller(PASSTHROUGH_TENANT, key and fingerprint(key), self._upstream or authorization)
        if key is None:
            raise Unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        presented = hashlib.sha256(key.encode()).digest()
        tenant = None
        for digest, name in self._keys:
            if hmac.compare_digest(presented, digest) and tenant is None:
                tenant = name
        if tenant is None:
            raise Unauthorized(f"Incorrect API key provided: {fingerprint(key)}.")
        return Caller(tenant, fingerprint(key), self._upstream)
