"""What both `StateStore` backends mean by the same call: the token windows, the verdicts, the
retention; `MemoryState` and `RedisState` each implement it (one atomically on the loop, one in Lua).

- Token buckets are fixed windows per tenant: the UTC minute (`tpm:{tenant}:{YYYYMMDDHHMM}`), the
  UTC day (`tpd:{tenant}:{YYYY-MM-DD}`) and the UTC month (`tpmo:{tenant}:{YYYY-MM}`). A
  reservation or an unreserved settle counts in all three buckets, whether or not a limit is
  configured for it, so a limit added by a reload starts from what was really spent; only the
  configured limits are checked.
- `reserve` refuses naming the first limit (minute, day, month) that `amount` would push over,
  with `retry_after_s` = the seconds until that bucket resets. The verdict carries a `Window` for
  tokens per minute whenever that limit is configured (after the reservation when admitted).
  Reserving again under an id already held admits without charging twice.
- `settle` charges the reservation's own buckets (those of the minute/day/month it was made in) by
  `total_tokens − reserved` (floored at 0); with `usage=None` the whole reservation stays charged.
  A run with no reservation (never bound, cancelled, or its reservation expired) charges
  `total_tokens` to the buckets of `now`; with `usage=None` it charges nothing. The ledger row of
  `now`'s UTC day gets `runs + 1` and the usage's tokens; with `usage=None` it gets `runs + 1` and
  no tokens (the ledger holds what the upstream reported; the budget holds the worst case).
- `bind` after the run was already settled gives the reservation back (the settle charged the
  usage without it) and does not list the run. A run has one reservation: bind it once.
- `cancel` gives the whole reservation back, bound or not (a bound run then settles as unreserved).
- `hold_for_run` replaces the call's lease by the run's in every key given; `release_run` drops the
  run's leases and remembers the run as released for `RELEASED_TTL_S` (a later hold only drops the
  call's leases).
- USD budgets are fixed windows too, in µUSD: the UTC day (`usdd:{owner}:{YYYY-MM-DD}`) and month
  (`usdmo:{owner}:{YYYY-MM}`) of the tenant and of `tenant:key`. A reservation with a `Spend` is
  checked against the token limits first, then the tenant's day and month, then the key's (the
  first that `micros` would push over refuses, `budget` its window), and counts in all four. At
  `settle` they move by `cost − micros`, as tokens do; a run reserved without a spend (or not at
  all) charges `cost` to the four buckets of `now`, the key being the one it was bound with, else
  `key`. The ledger row is per (day, tenant, key, model) and adds `cost` (0 without usage).
- Request windows are sliding window counters per UTC minute (`rpm:{bucket}:{minute}`, see
  `rate_check`); a refused hit is not counted.
- `admit` checks request windows, then leases, then the reservation, and takes all or nothing.
- Concurrency verdicts name `open_streams` for lease keys starting with `streams`, else
  `concurrent_runs`; a refused lease says retry after min(oldest lease's expiry, 1 s), since a slot
  usually frees long before its lease expires.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.domain import TokenLimits
from gateway.state import (
    CONCURRENT_RUNS,
    KEY_USD_PER_DAY,
    KEY_USD_PER_MONTH,
    OPEN_STREAMS,
    TOKENS_PER_DAY,
    TOKENS_PER_MINUTE,
    TOKENS_PER_MONTH,
    USD_PER_DAY,
    USD_PER_MONTH,
    Spend,
    Verdict,
    Window,
)

PENDING_TTL_S = 2 * 86400  # a reservation or pending run older than this is forgotten (reservation stays charged)
SETTLED_TTL_S = 7 * 86400  # how long a second settle of the same run id is recognised
LEDGER_DAYS = 400  # ledger days kept
RELEASED_TTL_S = 86400  # how long a run whose slots were released is not held again
LEASE_RETRY_AFTER_S = 1.0  # the longest retry-after a refused lease suggests


@dataclass(frozen=True, slots=True)
class Bucket:
    """One fixed token window of a tenant at some instant."""

    name: str  # TOKENS_PER_MINUTE, TOKENS_PER_DAY or TOKENS_PER_MONTH
    key: str  # e.g. `tpm:{tenant}:{YYYYMMDDHHMM}` (the Redis backend adds its prefix)
    reset_s: float  # seconds from the instant until the window ends
    ttl_s: int  # how long to keep the counter: past its end, with room for late settles


def token_buckets(tenant: str, now: float) -> tuple[Bucket, Bucket, Bucket]:
    """The minute, day and month buckets `now` falls in (UTC)."""
    minute_start = math.floor(now / 60) * 60
    minute, day, month, day_end, month_end = _calendar(minute_start)
    minute_reset = minute_start + 60 - now
    day_reset = day_end - now
    month_reset = month_end - now
    return (
        Bucket(TOKENS_PER_MINUTE, f"tpm:{tenant}:{minute}", minute_reset, 120),
        Bucket(TOKENS_PER_DAY, f"tpd:{tenant}:{day}", day_reset, math.ceil(day_reset) + 86400),
        Bucket(TOKENS_PER_MONTH, f"tpmo:{tenant}:{month}", month_reset, math.ceil(month_reset) + 86400),
    )


def usd_buckets(owner: str, now: float, names: tuple[str, str] = (USD_PER_DAY, USD_PER_MONTH)) -> tuple[Bucket, Bucket]:
    """The day and month USD buckets of `owner` (a tenant, or `tenant:key`) that `now` falls in (UTC)."""
    _, day, month = token_buckets(owner, now)
    return (
        Bucket(names[0], "usdd" + day.key.removeprefix("tpd"), day.reset_s, day.ttl_s),
        Bucket(names[1], "usdmo" + month.key.removeprefix("tpmo"), month.reset_s, month.ttl_s),
    )


def key_owner(tenant: str, key: str) -> str:
    return f"{tenant}:{key}"


def spend_buckets(tenant: str, spend: Spend, now: float) -> list[tuple[Bucket, int | None]]:
    """The four USD buckets a spend counts in, each with its limit (µUSD), in the order they are checked."""
    day, month = usd_buckets(tenant, now)
    key_day, key_month = usd_buckets(key_owner(tenant, spend.key), now, (KEY_USD_PER_DAY, KEY_USD_PER_MONTH))
    return [
        (day, spend.tenant_limits.per_day),
        (month, spend.tenant_limits.per_month),
        (key_day, spend.key_limits.per_day),
        (key_month, spend.key_limits.per_month),
    ]


def usd_verdict(admitted: Verdict, bucket: Bucket, limit: int, spent: int) -> Verdict:
    """A USD budget's refusal: the tokens' window as it stands, and the budget's own."""
    budget = Window(limit, max(0, limit - spent), bucket.reset_s)
    return Verdict(False, admitted.window, bucket.name, bucket.reset_s, budget)


@functools.lru_cache(maxsize=4)
def _calendar(minute_start: int) -> tuple[str, str, str, float, float]:
    """A UTC minute's names (`YYYYMMDDHHMM`, `YYYY-MM-DD`, `YYYY-MM`) and the ends of its day and month:
    the same for every call within the minute, and datetime arithmetic costs more than the rest."""
    at = datetime.fromtimestamp(minute_start, UTC)
    next_day = datetime(at.year, at.month, at.day, tzinfo=UTC) + timedelta(days=1)
    next_month = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=UTC)
    return f"{at:%Y%m%d%H%M}", f"{at:%Y-%m-%d}", f"{at:%Y-%m}", next_day.timestamp(), next_month.timestamp()


def limit_values(limits: TokenLimits) -> tuple[int | None, int | None, int | None]:
    return (limits.per_minute, limits.per_day, limits.per_month)


def token_verdict(
    buckets: tuple[Bucket, Bucket, Bucket], limits: TokenLimits, used_minute: int, refused: int | None
) -> Verdict:
    """`used_minute`: the minute bucket after an admitted reservation, before a refused one;
    `refused`: the index (0 minute, 1 day, 2 month) of the limit that refused, None if admitted."""
    window = None
    if limits.per_minute is not None:
        window = Window(limits.per_minute, max(0, limits.per_minute - used_minute), buckets[0].reset_s)
    if refused is None:
        return Verdict(True, window)
    bucket = buckets[refused]
    return Verdict(False, window, bucket.name, bucket.reset_s)


RATE_WINDOW_S = 60
RATE_TTL_S = 120  # a minute's request counter is read for two minutes: its own, and as the previous


def rate_keys(bucket: str, now: float) -> tuple[str, str]:
    """The counters of a request window: this UTC minute's (`rpm:{bucket}:{minute}`) and the previous."""
    minute = math.floor(now / RATE_WINDOW_S)
    return f"rpm:{bucket}:{minute}", f"rpm:{bucket}:{minute - 1}"


@dataclass(frozen=True, slots=True)
class RateCheck:
    ok: bool
    window: Window  # after the hit if ok, as it stands if not
    retry_after_s: float


def rate_check(limit: int, previous: int, current: int, now: float) -> RateCheck:
    """A sliding window counter: the previous minute's count weighted by the share of it still inside
    the last 60 s, plus this minute's. A hit fits if the weighted count stays within `limit`; a refusal
    says when it will (the previous minute's count decays over this one, this minute's over the next)."""
    into = (now % RATE_WINDOW_S) / RATE_WINDOW_S
    left_in_minute = RATE_WINDOW_S * (1 - into)
    weighted = previous * (1 - into) + current
    ok = weighted + 1 <= limit
    used = weighted + 1 if ok else weighted
    reset_s = left_in_minute if previous == 0 else min(left_in_minute, RATE_WINDOW_S / previous)
    window = Window(limit, max(0, math.floor(limit - used)), max(reset_s, 0.001))
    if ok:
        return RateCheck(True, window, 0.0)
    if current + 1 <= limit and previous > 0:  # this minute: once enough of the previous one has left
        wait = RATE_WINDOW_S * (1 - (limit - current - 1) / previous) - RATE_WINDOW_S * into
    else:  # the next minute: once enough of this one has left
        wait = left_in_minute + RATE_WINDOW_S * max(0.0, 1 - (limit - 1) / max(current, 1))
    return RateCheck(False, window, max(wait, 0.001))


def lease_limit_name(key: str) -> str:
    return OPEN_STREAMS if key.startswith(("streams", OPEN_STREAMS)) else CONCURRENT_RUNS


def utc_day(now: float) -> str:
    return _calendar(math.floor(now / 60) * 60)[1]
