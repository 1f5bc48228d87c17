"""The authenticate stage: caller key → tenant, and the credential that goes upstream.

Keys are compared as SHA-256 digests with `hmac.compare_digest` against every configured key, so
timing says nothing about which key, or how much of one, matched. Only a short fingerprint of a
key is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from gateway.config import PASSTHROUGH, Config
from gateway.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    fingerprint: str | None
    upstream_authorization: str | None


def fingerprint(key: str) -> str:
    return "fp_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class KeyRing:
    """Digests of known keys, each with a label; matching takes the same time whichever matches."""

    def __init__(self, keys: Iterable[tuple[SecretStr, str]]) -> None:
        self._digests = [(_digest(key.get_secret_value()), label) for key, label in keys]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, key: str) -> str | None:
        presented = hashlib.sha256(key.encode()).digest()
        found = None
        for digest, label in self._digests:  # no early exit
            if hmac.compare_digest(presented, digest) and found is None:
                found = label
        return found


def _digest(key: str) -> bytes:
    if key.startswith("sha256:"):
        return bytes.fromhex(key.removeprefix("sha256:"))
    return hashlib.sha256(key.encode()).digest()


def _missing_key() -> Unauthorized:
    return Unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )


class Authenticator:
    def __init__(self, config: Config) -> None:
        tenants = config.tenants
        self._passthrough = tenants is None
        self._keep_caller_key = config.upstream.credential == "caller"
        self._keys = KeyRing((key, name) for name, tenant in (tenants or {}).items() for key in tenant.keys)
        default = config.upstream.api_key
        self._upstream = {
            name: f"Bearer {key.get_secret_value()}"
            for name, tenant in (tenants or {}).items()
            if (key := tenant.upstream_api_key or default) is not None
        }

    def upstream_authorization(self, tenant: str) -> str | None:
        """The credential the gateway itself may use for a tenant (None: it holds none)."""
        return None if self._keep_caller_key else self._upstream.get(tenant)

    def authenticate(self, authorization: str | None) -> Caller:
        key = bearer_token(authorization)
        if self._passthrough:
            return Caller(PASSTHROUGH, key and fingerprint(key), authorization)
        if key is None:
            raise _missing_key()
        tenant = self._keys.match(key)
        if tenant is None:
            raise Unauthorized(f"Incorrect API key provided: {fingerprint(key)}.")
        upstream = authorization if self._keep_caller_key else self._upstream[tenant]
        return Caller(tenant, fingerprint(key), upstream)


def admin_check(keys: KeyRing, authorization: str | None) -> None:
    """Admin endpoints: 401 unless one of `admin.keys` is presented."""
    key = bearer_token(authorization)
    if key is None:
        raise _missing_key()
    if keys.match(key) is None:
        raise Unauthorized(f"Incorrect admin key provided: {fingerprint(key)}.")
