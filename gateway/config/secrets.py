"""Secrets in the config: only ever from the environment (`${VAR}`), never written in the file."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, SecretStr


class FromEnv(str):
    """A string that came out of `${VAR}` interpolation (so it was not written in the file)."""


def _from_env(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, FromEnv):
        raise ValueError("secrets must come from the environment (${VAR}), not the file")
    return value or None  # `${KEY:-}` left empty means "not set", never an empty credential


# A credential or key the gateway holds: only ever from the environment.
EnvSecret = Annotated[SecretStr | None, BeforeValidator(_from_env)]
