"""The gateway's YAML configuration: pydantic models, `${VAR}` interpolation, loading.

An unknown key or a wrong type is an error naming its key path, never a silent default. Secrets
(upstream credential, caller keys) may only come from the environment or, for caller keys, as a
`sha256:<hex>` digest: a plain secret written into the file is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class ConfigError(Exception):
    """Every problem found in a config, each as `key.path: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class FromEnv(str):
    """A string that came out of `${VAR}` interpolation (so it was not written in the file)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _plain_secret(value: object, *, digest_ok: bool) -> bool:
    """True for a secret written into the file itself rather than taken from the environment."""
    if not isinstance(value, str) or isinstance(value, FromEnv):
        return False
    return not (digest_ok and _DIGEST.fullmatch(value))


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="run-call JSON bodies; larger → 413")
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="pass-through bodies (file uploads)")
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM: how long open streams may finish")


class UpstreamConfig(_Section):
    base_url: HttpUrl = HttpUrl("https://api.openai.com/v1")
    api_key: SecretStr | None = Field(None, description="credential sent upstream; None = pass the caller's")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0, description="max wait for headers and between stream chunks")
    pool_size: int = Field(256, gt=0)
    max_response_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest JSON body read to observe")
    unknown_fields: Literal["reject", "pass"] = "reject"
    allowed_paths: tuple[str, ...] = ("/threads", "/assistants", "/files", "/vector_stores")

    @field_validator("api_key", mode="before")
    @classmethod
    def _key_from_env(cls, key: object) -> object:
        if _plain_secret(key, digest_ok=False):
            raise ValueError("the upstream credential must come from the environment (${VAR})")
        return key

    @field_validator("allowed_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not path.startswith("/") or path.startswith("/v1/"):
                raise ValueError(f"{path!r}: give paths below the API root, like '/threads'")
        return paths


class TenantConfig(_Section):
    keys: tuple[SecretStr, ...] = Field(min_length=1, description="`${ENV}` or `sha256:<hex>` digests")

    @field_validator("keys", mode="before")
    @classmethod
    def _keys_from_env(cls, keys: object) -> object:
        if isinstance(keys, list | tuple):
            plain = [i for i, key in enumerate(keys) if _plain_secret(key, digest_ok=True)]
            if plain:
                raise ValueError(f"entries {plain} are written in the file: use ${{VAR}} or sha256:<hex>")
        return keys


class TelemetryConfig(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"


class Config(_Section):
    listen: ListenConfig = ListenConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    tenants: dict[str, TenantConfig] | None = Field(
        None, description="absent: pass-through, the caller's own key goes upstream"
    )
    telemetry: TelemetryConfig = TelemetryConfig()

    @model_validator(mode="after")
    def _tenants_need_upstream_key(self) -> Config:
        if self.tenants is not None and self.upstream.api_key is None:
            raise ValueError("tenants are set, so upstream.api_key must be too (tenants never hold it)")
        return self

    def summary(self) -> str:
        tenants = "pass-through" if self.tenants is None else f"{len(self.tenants)} tenant(s)"
        return f"listen {self.listen.host}:{self.listen.port}, upstream {self.upstream.base_url}, {tenants}"


def interpolate(node: Any, env: Mapping[str, str], problems: list[str], path: str = "") -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; each unset variable is a problem."""
    if isinstance(node, dict):
        return {key: interpolate(value, env, problems, _join(path, str(key))) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env, problems, f"{path}[{i}]") for i, value in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            problems.append(f"{path}: environment variable {name} is not set")
        return default or ""

    return FromEnv(_VAR.sub(substitute, node))


def parse_config(raw: object, source: str = "config", env: Mapping[str, str] | None = None) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top level): expected a mapping of sections"])
    problems: list[str] = []
    data = interpolate(raw, os.environ if env is None else env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(error) for error in exc.errors()]
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    return parse_config(raw, str(path), env)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _problem(error: Mapping[str, Any]) -> str:
    path = ""
    for part in error["loc"]:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    message = message.removeprefix("Value error, ")
    return f"{path or '(top level)'}: {message}"
