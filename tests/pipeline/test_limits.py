"""The pure part of admission: which checks a call faces, the headers it reports, how a 429 reads."""

from __future__ import annotations

import pytest

from gateway.config.limits import TenantLimits
from gateway.limits import Ticket, checks_for, duration, refusal
from gateway.state import CONCURRENT_RUNS, OPEN_STREAMS, REQUESTS_PER_MINUTE, TOKENS_PER_DAY, Verdict, Window


def test_only_the_limits_that_are_set_are_checked_and_streams_only_when_streaming() -> None:
    limits = TenantLimits(requests_per_minute=60, open_streams=2, per_key={"requests_per_minute": 10})
    checks = checks_for(limits, "team", "fp_1", stream=False)
    assert checks.rates == (("rpm:team", 60), ("rpm:team:fp_1", 10))
    assert checks.leases == ()
    streaming = checks_for(limits, "team", "fp_1", stream=True)
    assert streaming.leases == (("streams:team", OPEN_STREAMS, 2),)
    runs = checks_for(TenantLimits(concurrent_runs=3), "team", "fp_1", stream=True)
    assert runs.rates == () and runs.leases == (("runs:team", CONCURRENT_RUNS, 3),)


def test_the_tightest_request_window_is_reported() -> None:
    ticket = Ticket()
    ticket.saw_requests(Window(60, 40, 12.0))
    ticket.saw_requests(Window(10, 3, 0.25))
    ticket.saw_requests(None)
    ticket.tokens = Window(5000, -20, 3600.0)
    assert ticket.headers() == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "250ms",
        "x-ratelimit-limit-tokens": "5000", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1h0m0s",
    }  # fmt: skip


def test_a_refusal_is_openais_429_naming_the_limit_and_when_to_retry() -> None:
    ticket = Ticket(requests=Window(10, 0, 30.0))
    error = refusal(Verdict(False, Window(10, 0, 30.0), REQUESTS_PER_MINUTE, 29.2), REQUESTS_PER_MINUTE, "team", ticket)
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert error.message == "Rate limit reached for tenant team on requests per minute: limit 10, remaining 0. Please try again in 30s."
    assert error.headers["retry-after"] == "30" and error.headers["retry-after-ms"] == "29200"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    tokens = refusal(Verdict(False, None, TOKENS_PER_DAY, 0.0), TOKENS_PER_DAY, "team", Ticket())
    assert tokens.type == "tokens" and tokens.headers["retry-after-ms"] == "1"


@pytest.mark.parametrize(("seconds", "text"), [(0.0001, "1ms"), (0.25, "250ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"), (3661, "1h1m1s")])
def test_durations_read_as_openai_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
