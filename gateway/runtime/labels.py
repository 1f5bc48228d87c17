"""Bounded label values for metrics: names from the config pass, anything else is `other`."""

from __future__ import annotations

from collections.abc import Iterable

OTHER = "other"


class Labels:
    """Bounded label values: known names pass, anything else is `other`."""

    def __init__(self, tenants: Iterable[str], models: Iterable[str]) -> None:
        self.tenants = frozenset(tenants)
        self.models = frozenset(models)

    def tenant(self, name: str | None) -> str:
        return name if name in self.tenants else OTHER

    def model(self, name: str | None) -> str:
        if name is None:
            return "unknown"
        return name if name in self.models else OTHER
