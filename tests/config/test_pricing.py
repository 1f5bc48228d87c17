"""The price table: what a run costs, in whole µUSD, by the model the upstream ran."""

from __future__ import annotations

from decimal import Decimal

from gateway.config import parse_config
from gateway.config.pricing import DEFAULT_PRICES, ModelPrice, Pricing
from gateway.domain import Usage


def test_cached_tokens_are_priced_as_cached_and_reasoning_as_output() -> None:
    price = ModelPrice(input=Decimal("2.00"), cached_input=Decimal("0.50"), output=Decimal("8.00"))
    usage = Usage(prompt_tokens=1000, completion_tokens=300, total_tokens=1300, cached_tokens=400, reasoning_tokens=100)
    assert price.cost(usage) == 600 * 2 + 400 * Decimal("0.5") + 300 * 8  # 3,800 µUSD
    assert price.worst_case(1000, 300) == 1000 * 2 + 300 * 8  # nothing assumed cached


def test_a_cost_is_rounded_once_to_the_micro_dollar() -> None:
    price = ModelPrice(input=Decimal("0.15"), cached_input=Decimal("0.075"), output=Decimal("0.60"))
    assert price.cost(Usage(3, 1, 4)) == 1  # 0.45 + 0.60 = 1.05 µUSD
    assert price.cost(Usage(1, 0, 1, cached_tokens=1)) == 0  # 0.075 µUSD
    assert price.worst_case(1, 0) == 1  # a worst case rounds up


def test_snapshots_and_the_model_map_find_their_price() -> None:
    pricing = Pricing({}, model_map={"house-model": "gpt-4.1-mini"})
    assert pricing.price("gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert pricing.price("house-model") == DEFAULT_PRICES["gpt-4.1-mini"]
    assert pricing.price("no-such-model") is None
    assert pricing.cost("no-such-model", Usage(1, 1, 2)) is None


def test_config_prices_are_merged_over_the_shipped_table() -> None:
    config = parse_config({"pricing": {"gpt-4.1": {"input": 1, "cached_input": 0.25, "output": 4}, "mine": {"input": 1, "output": 2}}})
    pricing = Pricing(config.pricing)
    assert pricing.cost("gpt-4.1", Usage(1000, 1000, 2000)) == 5000
    assert pricing.cost("mine", Usage(10, 10, 20, cached_tokens=10)) == 30  # no cached price: input's
    assert pricing.price("gpt-4o") == DEFAULT_PRICES["gpt-4o"]
