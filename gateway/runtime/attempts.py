"""Failed key attempts on the gateway's own endpoints (/admin/*, a keyed /metrics), per client address.

After `admin.failed_attempts.max_failures` wrong (or missing) keys from one address within
`window_s`, that address is answered 429 without its key being checked, until its oldest failure
leaves the window: guessing keys costs a window per few guesses. The counts are `limits`' moving
window in this process's memory: each worker of `--workers N` counts its own and a restart forgets,
which is enough to make guessing slow; the address is the TCP peer's (behind a proxy, the proxy's).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from gateway.config import FailedAttemptsConfig
from gateway.errors import RateLimited, Unauthorized
from gateway.runtime.auth import KeyRing, admin_check


class FailedAttempts:
    """The failures counted per address; the thresholds are read per check, so a reload applies them."""

    def __init__(self) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check_key(self, keys: KeyRing, authorization: str | None, address: str, limit: FailedAttemptsConfig) -> None:
        """401 for a wrong key (counted), 429 for an address out of attempts (the key is not looked at)."""
        item = RateLimitItemPerSecond(limit.max_failures, limit.window_s)
        if not self._limiter.test(item, address):
            raise _locked_out(self._retry_after_s(item, address))
        try:
            admin_check(keys, authorization)
        except Unauthorized:
            self._limiter.hit(item, address)
            raise

    def _retry_after_s(self, item: RateLimitItem, address: str) -> int:
        reset_at, _remaining = self._limiter.get_window_stats(item, address)
        return max(1, math.ceil(reset_at - time.time()))


class TooManyFailedAttempts(RateLimited):
    code = "too_many_failed_attempts"


def _locked_out(retry_after_s: int) -> TooManyFailedAttempts:
    return TooManyFailedAttempts(
        f"Too many failed key attempts from this address. Please try again in {retry_after_s}s.",
        kind="requests",
        headers={"Retry-After": str(retry_after_s), "retry-after-ms": str(retry_after_s * 1000)},
    )
