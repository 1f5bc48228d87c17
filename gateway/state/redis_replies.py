"""ADMIT's arguments made and its reply read (`RedisState.admit`), and the ledger's days read into
rows (`RedisState.usage`): pure, apart from the store's I/O."""

from __future__ import annotations

import json

from gateway.state import NO_KEY, REQUESTS_PER_MINUTE, Admission, Admitted, Reservation, UsageRow, Verdict, Window
from gateway.state.semantics import (
    LEASE_RETRY_AFTER_S,
    PENDING_TTL_S,
    Bucket,
    lease_limit_name,
    limit_values,
    rate_check,
    spend_buckets,
    token_buckets,
    token_verdict,
    usd_verdict,
)


def reserved_buckets(wanted: Reservation | None, now: float) -> list[tuple[Bucket, int | None]]:
    """A reservation's buckets, each with its limit: minute, day, month (tokens), then its spend's."""
    if wanted is None:
        return []
    usd = spend_buckets(wanted.tenant, wanted.spend, now) if wanted.spend is not None else []
    return [*zip(token_buckets(wanted.tenant, now), limit_values(wanted.limits), strict=True), *usd]


def reserve_args(wanted: Reservation | None, checked: list[tuple[Bucket, int | None]]) -> list[str | int]:
    if wanted is None:
        return []
    micros = max(0, wanted.spend.micros) if wanted.spend is not None else 0
    limits = (arg for bucket, limit in checked for arg in (-1 if limit is None else limit, bucket.ttl_s))
    return [wanted.tenant, PENDING_TTL_S, max(0, wanted.tokens), micros, *limits]


def admitted_from(admission: Admission, out: list[int], checked: list[tuple[Bucket, int | None]]) -> Admitted:
    """ADMIT's reply read: each window's and lease's state, and the first refusal, if any."""
    stage, index, pos = out[0], out[1], 2
    rates = []
    for _, limit in admission.rates:
        rates.append(rate_check(limit, out[pos], out[pos + 1], admission.now))
        pos += 2
    requests = [check.window for check in rates]
    if stage == 1:
        check = rates[index - 1]
        return Admitted(Verdict(False, check.window, REQUESTS_PER_MINUTE, check.retry_after_s), requests, [])
    leases, waits = [], []
    for _, limit in admission.leases:
        leases.append(Window(limit, max(0, limit - out[pos]), 0.0))
        waits.append(max(0.0, out[pos + 1] / 1000))
        pos += 2
    if stage == 2:
        bucket, limit = admission.leases[index - 1]
        wait = waits[index - 1]
        return Admitted(
            Verdict(False, Window(limit, 0, wait), lease_limit_name(bucket), min(wait, LEASE_RETRY_AFTER_S)),
            requests, leases,
        )  # fmt: skip
    wanted = admission.reservation
    if wanted is None:
        return Admitted(Verdict(True), requests, leases)
    ok, refused, used_minute, used_refused = out[pos : pos + 4]
    buckets = (checked[0][0], checked[1][0], checked[2][0])
    if ok or refused <= 3:
        return Admitted(token_verdict(buckets, wanted.limits, used_minute, None if ok else refused - 1), requests, leases)
    budget, budget_limit = checked[refused - 1]
    assert budget_limit is not None
    admitted = token_verdict(buckets, wanted.limits, used_minute, None)
    return Admitted(usd_verdict(admitted, budget, budget_limit, used_refused), requests, leases)


_METRICS = ("runs", "prompt", "completion", "total", "cost")


def ledger_rows(tables: list[tuple[str, dict[str, str]]], tenant: str | None) -> list[UsageRow]:
    """The ledger's (day, its hash) read into rows, `tenant`'s only if given; a row found in several
    tables (a day kept before and after the ledger moved) is their sum."""
    counts: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for day, table in tables:
        for field, value in table.items():
            try:
                parts = json.loads(field)
                row_tenant, key, model, metric = parts if len(parts) == 4 else (parts[0], NO_KEY, *parts[1:])
            except (ValueError, TypeError):
                continue
            if tenant is None or row_tenant == tenant:
                row = counts.setdefault((day, row_tenant, key, model), {})
                row[metric] = row.get(metric, 0) + int(value)
    return [
        UsageRow(row_tenant, key, model, day, *(values.get(metric, 0) for metric in _METRICS))
        for (day, row_tenant, key, model), values in sorted(counts.items(), key=lambda item: item[0])
    ]
