"""Everything derived from one config, swapped whole on reload.

A request takes the current `Runtime` once, when it arrives (see `pipeline/middlewares.authenticate`), and
keeps it to the end: in-flight requests finish under the config and policy they started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cachetools import TTLCache

from gateway.config import Config
from gateway.config.policy import PolicyConfig
from gateway.config.pricing import Pricing
from gateway.policy.decision import Facts
from gateway.runtime.auth import PASSTHROUGH, Authenticator, KeyRing
from gateway.runtime.labels import Labels
from gateway.upstreams import UpstreamAdapter, adapter_for

_ASSISTANTS_CACHED = 10_000


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    authenticator: Authenticator
    upstream: UpstreamAdapter  # the upstream protocol's adapter: what the forward stage calls
    admin_keys: KeyRing
    metrics_keys: KeyRing  # none: /metrics is open
    labels: Labels  # metric label values this config allows
    pricing: Pricing  # what a run costs, by the model the upstream ran
    declared_owners: dict[str, str]  # object id → the tenant whose config `owns` it
    # (tenant, assistant id) → its model, tools, instructions; lives with the config, so a reload starts it afresh.
    assistant_facts: TTLCache[tuple[str, str], Facts] = field(compare=False)

    @classmethod
    def from_config(cls, config: Config) -> Runtime:
        return cls(
            config=config,
            authenticator=Authenticator(config),
            upstream=adapter_for(config),
            admin_keys=KeyRing((key, "admin") for key in config.admin.keys),
            metrics_keys=KeyRing((key, "metrics") for key in config.telemetry.metrics.keys),
            labels=Labels([*(config.tenants or {}), PASSTHROUGH], config.telemetry.metric_models),
            pricing=Pricing(config.pricing, config.upstream.model_map),
            declared_owners={object_id: name for name, t in (config.tenants or {}).items() for object_id in t.owns},
            assistant_facts=TTLCache(_ASSISTANTS_CACHED, ttl=config.upstream.assistant_cache_ttl_s or 1e-9),
        )

    def policy_for(self, tenant: str) -> PolicyConfig | None:
        return self.config.policy_for(tenant)

    def unknown_objects_allowed(self, tenant: str) -> bool:
        tenants = self.config.tenants
        return tenants is None or tenant not in tenants or tenants[tenant].unknown_objects == "allow"


class RuntimeHolder:
    """The one mutable cell: assignment is atomic on the event loop."""

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
