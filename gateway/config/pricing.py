"""The `pricing:` section, and what a run costs under it: pure, in whole micro-dollars (µUSD).

Prices are USD per 1M tokens, so a token count times a price is µUSD: a run's cost is computed once,
rounded once to the µUSD, and every reader (the ledger, /admin/usage, the metric, the audit record,
the USD budgets) adds up the same integers, so they agree to the cent.

The shipped table is OpenAI's list price per model, standard tier, as published on
https://openai.com/api/pricing on `PRICES_TAKEN`; `pricing:` in the config is merged over it (a
model named there replaces the shipped entry). A dated snapshot (`gpt-4o-2024-08-06`) is priced as
its model unless the table names the snapshot itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from pydantic import BaseModel, ConfigDict, Field

from gateway.domain import Usage

PRICES_TAKEN = "2025-08-07"
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class ModelPrice(BaseModel):
    """USD per 1M tokens. Cached input defaults to the input price (no discount known)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(None, ge=0)

    def cost(self, usage: Usage) -> int:
        """µUSD for a run's usage: cached prompt tokens at the cached price, the rest at input, the
        completion (reasoning included: it is billed as output) at output."""
        cached = min(max(usage.cached_tokens or 0, 0), usage.prompt_tokens)
        micros = (
            (usage.prompt_tokens - cached) * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + usage.completion_tokens * self.output
        )
        return int(micros.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def worst_case(self, prompt_tokens: int, completion_tokens: int) -> int:
        """µUSD of a run that uses all it may, none of it cached: what a USD budget reserves."""
        micros = prompt_tokens * self.input + completion_tokens * self.output
        return int(micros.to_integral_value(rounding=ROUND_CEILING))


def _price(input: str, cached_input: str | None, output: str) -> ModelPrice:
    cached = None if cached_input is None else Decimal(cached_input)
    return ModelPrice(input=Decimal(input), output=Decimal(output), cached_input=cached)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-5": _price("1.25", "0.125", "10.00"),
    "gpt-5-mini": _price("0.25", "0.025", "2.00"),
    "gpt-5-nano": _price("0.05", "0.005", "0.40"),
    "gpt-4.1": _price("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": _price("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _price("0.10", "0.025", "0.40"),
    "gpt-4o": _price("2.50", "1.25", "10.00"),
    "gpt-4o-mini": _price("0.15", "0.075", "0.60"),
    "o3": _price("2.00", "0.50", "8.00"),
    "o3-mini": _price("1.10", "0.55", "4.40"),
    "o4-mini": _price("1.10", "0.275", "4.40"),
    "o1": _price("15.00", "7.50", "60.00"),
    "gpt-4-turbo": _price("10.00", None, "30.00"),
    "gpt-4": _price("30.00", None, "60.00"),
    "gpt-3.5-turbo": _price("0.50", None, "1.50"),
}


class Pricing:
    """The price table in force (the shipped one under the config's), looked up by the model the
    upstream ran: `model_map` applied first, so a run reported under the model its client asked for
    (the Responses facade) is priced as what ran."""

    def __init__(self, overrides: Mapping[str, ModelPrice], model_map: Mapping[str, str] | None = None) -> None:
        self._prices = {**DEFAULT_PRICES, **overrides}
        self._model_map = model_map or {}

    def price(self, model: str | None) -> ModelPrice | None:
        if model is None:
            return None
        model = self._model_map.get(model, model)
        found = self._prices.get(model)
        if found is None and _SNAPSHOT.search(model):
            found = self._prices.get(_SNAPSHOT.sub("", model))
        return found

    def cost(self, model: str | None, usage: Usage | None) -> int | None:
        """µUSD of a run; None when its model has no price (or nothing was used: no usage)."""
        price = self.price(model)
        return None if price is None or usage is None else price.cost(usage)


def usd(micros: int) -> float:
    """µUSD as dollars, for JSON and metrics (exact to the µUSD for any realistic sum)."""
    return micros / 1_000_000
