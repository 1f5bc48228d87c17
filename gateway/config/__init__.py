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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.assistants import AssistantConfig
from gateway.config.audit import AuditConfig
from gateway.config.limits import LimitsConfig
from gateway.config.policy import PolicyConfig
from gateway.config.pricing import ModelPrice
from gateway.config.secrets import EnvSecret, FromEnv

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


PASSTHROUGH = "passthrough"  # the one tenant of pass-through mode (no `tenants`)
DEFAULT_METRIC_MODELS = (
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4-turbo", "gpt-4",
    "gpt-3.5-turbo", "o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano",
)  # fmt: skip


class ConfigError(Exception):
    """Every problem found in a config, each as `key.path: message`."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _from_env_or_digest(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, FromEnv) and not _DIGEST.fullmatch(value):
        raise ValueError("keys must come from the environment (${VAR}) or be a sha256:<hex> digest")
    if value == "":
        raise ValueError("an empty key would match an empty Authorization header")
    return value


# A caller key the gateway checks: from the environment, or stored as its digest.
CallerKey = Annotated[SecretStr, BeforeValidator(_from_env_or_digest)]


class ListenConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="run-call JSON bodies; larger → 413")
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="pass-through bodies (file uploads)")
    drain_timeout_s: float = Field(
        30.0, ge=0, description="SIGTERM: how long open streams may go on; then each ends with an error event"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="the longest a client may take to send a run call's body → 408"
    )
    upload_idle_timeout_s: float = Field(
        30.0, gt=0, description="the longest a pass-through body (an upload) may stall between chunks → 408"
    )
    workers: int = Field(1, ge=1, description="processes serving this port (SO_REUSEPORT); >1 needs Redis state")


class UpstreamConfig(_Section):
    base_url: HttpUrl = HttpUrl("https://api.openai.com/v1")
    api_key: EnvSecret = Field(None, description="credential sent upstream for every tenant without its own")
    credential: Literal["gateway", "caller"] = Field(
        "gateway", description="gateway: swap in api_key / the tenant's key; caller: keep the caller's key"
    )
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0, description="max wait for headers and between stream chunks")
    pool_size: int = Field(256, gt=0)
    max_response_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest JSON body read to observe")
    unknown_fields: Literal["reject", "pass"] = "reject"
    allowed_paths: tuple[str, ...] = ("/threads", "/assistants", "/files", "/vector_stores")
    assistant_cache_ttl_s: float = Field(60.0, ge=0, description="how long an assistant's model, tools and instructions are trusted")
    protocol: Literal["assistants", "responses"] = Field(
        "assistants", description="assistants: forward as is; responses: serve the Assistants API on Responses"
    )
    model_map: dict[str, str] = Field(default_factory=dict, description="model asked → model sent (responses)")

    @field_validator("allowed_paths")
    @classmethod
    def _absolute(cls, paths: tuple[str, ...]) -> tuple[str, ...]:
        for path in paths:
            if not path.startswith("/") or path.startswith("/v1/"):
                raise ValueError(f"{path!r}: give paths below the API root, like '/threads'")
        return paths


class TenantConfig(_Section):
    keys: tuple[CallerKey, ...] = Field(min_length=1, description="`${ENV}` or `sha256:<hex>` digests")
    policy: str | None = Field(None, description="a name under `policies`; absent: the `default` policy, if any")
    upstream_api_key: EnvSecret = Field(None, description="this tenant's own upstream credential")
    unknown_objects: Literal["allow", "deny"] = Field(
        "deny",
        validation_alias=AliasChoices("unknown_objects", "unknown_threads"),  # (its name before files and stores)
        description="objects the gateway never saw created (before it ran, or by another route): deny → 404",
    )
    owns: tuple[str, ...] = Field(
        (), description="ids of objects made before the gateway (assistants, files, vector stores, threads) that are "
        "this tenant's alone, whatever the claims say",
    )  # fmt: skip


class FailedAttemptsConfig(_Section):
    max_failures: int = Field(10, ge=1, description="wrong keys from one client address before it is locked out")
    window_s: int = Field(60, ge=1, description="the window failures are counted in; a lockout lasts until it frees")


class AdminConfig(_Section):
    keys: tuple[CallerKey, ...] = Field((), description="keys for /admin/*; none: the admin API is off")
    failed_attempts: FailedAttemptsConfig = Field(
        FailedAttemptsConfig(), description="wrong keys on /admin/* and a keyed /metrics → 429 for a while"
    )


class StateConfig(_Section):
    backend: Literal["memory", "redis"] = Field("memory", description="memory: one process; redis: shared")
    url: str | None = Field(None, description="redis://host:port/db, with credentials from ${VAR}")
    cluster: bool = Field(False, description="url names a node of a Redis Cluster (each tenant's keys share a slot)")
    timeout_s: float = Field(0.25, gt=0, description="longest wait for one Redis call")
    on_failure: Literal["fail_open", "fail_closed"] = Field(
        "fail_open", description="Redis unreachable: admit and count locally, or answer 503"
    )
    max_owned_objects: int = Field(
        1_000_000, gt=0, description="owned objects remembered; the least recently used is forgotten, and then denied"
    )

    @model_validator(mode="after")
    def _redis_needs_a_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("url: required when backend is redis")
        return self


class TracingConfig(_Section):
    enabled: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when OTEL_TRACES_EXPORTER or an OTLP endpoint variable is set"
    )
    capture_content: bool = Field(False, description="put prompt and completion text on spans")


class MetricsConfig(_Section):
    host: str | None = Field(None, description="the address of `port`; absent: listen.host")
    port: int | None = Field(
        None, ge=1, le=65535, description="serve /metrics on this port only, not on listen.port; absent: listen.port"
    )
    keys: tuple[CallerKey, ...] = Field(
        (), description="`${ENV}` or `sha256:<hex>`: /metrics then needs one as a bearer key; none: open"
    )


class TelemetryConfig(_Section):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    metric_models: tuple[str, ...] = Field(
        DEFAULT_METRIC_MODELS, description="models that get their own metric label; any other is `other`"
    )
    tracing: TracingConfig = TracingConfig()
    metrics: MetricsConfig = MetricsConfig()


class Config(_Section):
    listen: ListenConfig = ListenConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    tenants: dict[str, TenantConfig] | None = Field(
        None, description="absent: pass-through, the caller's own key goes upstream"
    )
    policies: dict[str, PolicyConfig] = Field(default_factory=dict)
    limits: LimitsConfig = LimitsConfig()
    pricing: dict[str, ModelPrice] = Field(
        default_factory=dict, description="USD per 1M tokens by model, merged over the shipped table"
    )
    state: StateConfig = StateConfig()
    admin: AdminConfig = AdminConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    audit: AuditConfig = AuditConfig()
    assistants: dict[str, AssistantConfig] = Field(default_factory=dict, description="platform-defined assistants")

    @model_validator(mode="after")
    def _assistants_fit_the_protocol(self) -> Config:
        if self.assistants and self.upstream.protocol != "responses":
            raise ValueError("assistants: platform-defined assistants need upstream.protocol: responses")
        if self.upstream.model_map and self.upstream.protocol != "responses":
            raise ValueError("upstream.model_map: models are renamed only when serving on the Responses API "
                             "(upstream.protocol: responses)")  # fmt: skip
        known = set(self.tenants or ())
        for name, assistant in self.assistants.items():
            unknown = sorted(set(assistant.tenants or ()) - known)
            if unknown:
                raise ValueError(f"assistants.{name}.tenants: no tenant named {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _credentials_fit_the_mode(self) -> Config:
        upstream = self.upstream
        if self.tenants is None:
            if upstream.api_key is not None:
                raise ValueError("upstream.api_key without tenants would let anyone spend it: define tenants")
            return self
        for name, tenant in self.tenants.items():
            if upstream.credential == "caller" and (tenant.upstream_api_key or upstream.api_key):
                raise ValueError(f"tenants.{name}: upstream.credential is 'caller', so no upstream key may be set")
            if upstream.credential == "gateway" and not (tenant.upstream_api_key or upstream.api_key):
                raise ValueError(f"tenants.{name}: needs upstream_api_key, or set upstream.api_key")
            if tenant.policy is not None and tenant.policy not in self.policies:
                raise ValueError(f"tenants.{name}.policy: no policy named {tenant.policy!r} under policies")
        declared: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            for object_id in tenant.owns:
                if declared.setdefault(object_id, name) != name:
                    raise ValueError(f"tenants.{name}.owns: {object_id} is already tenant {declared[object_id]}'s")
        return self

    @model_validator(mode="after")
    def _metrics_port_is_its_own(self) -> Config:
        metrics = self.telemetry.metrics
        if metrics.port is not None and metrics.port == self.listen.port:
            raise ValueError("telemetry.metrics.port: the same as listen.port; leave it out to serve /metrics there")
        return self

    @model_validator(mode="after")
    def _budgets_need_finite_runs(self) -> Config:
        """A token or USD budget reserves each run's worst case, so the policy must cap both token fields."""
        known = set(self.tenants) if self.tenants is not None else {PASSTHROUGH}
        for name in self.limits.tenants:
            if name not in known:
                raise ValueError(f"limits.tenants.{name}: no such tenant")
        for name in known:
            if not self.limits.for_tenant(name).reserves:
                continue
            policy = self.policy_for(name)
            tokens = policy.tokens if policy is not None else None
            if tokens is None or tokens.max_prompt_tokens is None or tokens.max_completion_tokens is None:
                raise ValueError(
                    f"tenant {name}: token and USD budgets need its policy ({self.policy_name_for(name)!r}) to cap "
                    "tokens.max_prompt_tokens and tokens.max_completion_tokens, so every run's cost is finite"
                )
        return self

    def worker_problems(self) -> list[str]:
        """What stops `listen.workers` processes from serving this config side by side (checked on
        every load, and again after `serve --workers N`)."""
        workers = self.listen.workers
        if workers == 1:
            return []
        problems = []
        if self.listen.port == 0:
            problems.append(f"listen.port: 0 (any free port) would give each of the {workers} workers its own port")
        if self.state.backend == "memory":
            problems.append(
                f"listen.workers: {workers} worker processes must share limits, budgets and thread ownership: "
                "use state.backend: redis"
            )
        if self.audit.enabled and self.audit.sink == "stdout":
            problems.append(
                f"listen.workers: {workers} worker processes would interleave their hash chains on stdout: "
                "use audit.sink: file (one file per worker) or audit.enabled: false"
            )
        return problems

    def policy_name_for(self, tenant: str) -> str:
        tenant_config = (self.tenants or {}).get(tenant)
        return tenant_config.policy if tenant_config and tenant_config.policy else "default"

    def policy_for(self, tenant: str) -> PolicyConfig | None:
        return self.policies.get(self.policy_name_for(tenant))

    def with_upstream(self, base_url: str) -> Config:
        """The same config aimed at another upstream (the in-process simulator of `--mock-upstream`)."""
        return self.model_copy(update={"upstream": self.upstream.model_copy(update={"base_url": HttpUrl(base_url)})})

    def summary(self) -> str:
        tenants = "pass-through" if self.tenants is None else f"{len(self.tenants)} tenant(s)"
        return (
            f"listen {self.listen.host}:{self.listen.port}, upstream {self.upstream.base_url}, {tenants}, "
            f"{len(self.policies)} polic{'y' if len(self.policies) == 1 else 'ies'}"
        )


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
        # A missing variable was already named; the empty value it left would only echo it.
        unset = {problem.split(":", 1)[0] for problem in problems}
        found = (_problem(error) for error in exc.errors())
        problems += [p for p in found if not unset or p.split(":", 1)[0] not in unset | {"(top level)"}]
    else:
        problems += config.worker_problems()
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
    if raw is None:  # an empty file (or one caught half-written) is never "all defaults"
        raise ConfigError(str(path), ["the file is empty"])
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
