"""The `limits:` section: per-tenant (and per-key) rates, concurrency, token rates and budgets."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain import TokenLimits, UsdLimits


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyLimits(_Section):
    """Limits for each of a tenant's keys on its own (a runaway app cannot starve its siblings)."""

    requests_per_minute: int | None = Field(None, gt=0)
    concurrent_runs: int | None = Field(None, gt=0)
    usd_per_day: float | None = Field(None, gt=0, description="USD budget per UTC day, at `pricing:`")
    usd_per_month: float | None = Field(None, gt=0, description="USD budget per UTC calendar month")

    @property
    def usd(self) -> UsdLimits:
        return UsdLimits(_micros(self.usd_per_day), _micros(self.usd_per_month))


class TenantLimits(KeyLimits):
    open_streams: int | None = Field(None, gt=0, description="streams relayed at once")
    tokens_per_minute: int | None = Field(None, gt=0, description="reserved at admission, settled on usage")
    tokens_per_day: int | None = Field(None, gt=0, description="budget per UTC day")
    tokens_per_month: int | None = Field(None, gt=0, description="budget per UTC calendar month")
    per_key: KeyLimits | None = None

    @property
    def counts_runs(self) -> bool:
        """Whether the tenant's runs hold concurrency slots, to be given back when a run is seen ending."""
        return self.concurrent_runs is not None or (
            self.per_key is not None and self.per_key.concurrent_runs is not None
        )

    @property
    def tokens(self) -> TokenLimits:
        return TokenLimits(self.tokens_per_minute, self.tokens_per_day, self.tokens_per_month)

    @property
    def spends_usd(self) -> bool:
        """Whether a USD budget (the tenant's or each key's) limits its runs."""
        return bool(self.usd) or (self.per_key is not None and bool(self.per_key.usd))

    @property
    def reserves(self) -> bool:
        """Whether its runs reserve their worst case at admission (a token or a USD budget)."""
        return bool(self.tokens) or self.spends_usd


def _micros(dollars: float | None) -> int | None:
    return None if dollars is None else round(dollars * 1_000_000)


class LimitsConfig(_Section):
    default: TenantLimits = Field(TenantLimits(), description="for every tenant without its own entry")
    tenants: dict[str, TenantLimits] = Field(default_factory=dict)
    reconcile_after_s: float = Field(120.0, gt=0, description="a run not settled this long is polled upstream")
    reconcile_interval_s: float = Field(10.0, gt=0, description="how often the reconciler looks")
    abandon_after_s: float = Field(
        3 * 3600.0, gt=0, description="a run still unknown after this is charged its whole reservation"
    )
    lease_ttl_s: float = Field(
        3600.0, gt=0, description="a concurrency slot a crashed replica never gave back frees itself after this"
    )
    run_lease_ttl_s: float = Field(
        600.0,
        gt=0,
        description="a run's concurrency slot, held from the end of its last call until the run is seen finished, "
        "frees itself after this (OpenAI expires a run 10 minutes after it was created)",
    )

    def for_tenant(self, tenant: str) -> TenantLimits:
        return self.tenants.get(tenant, self.default)
