"""Fault injection, chosen per request with `X-Simulator-Fault`.

Values: `http-<status>`, `hang`, `hang-mid-stream[:N]`, `drop[:N]`, `error-event[:N]`, `run-failed`,
`run-incomplete`. `N` is how many stream events go out before the fault strikes (default: the
settings' `fault_after_events`). `hang-mid-stream` and `drop` only touch streamed responses.
`run-failed`/`run-incomplete` change how the run itself ends, so they hold for streamed and polled
runs alike; so does `error-event`, a server failure mid-run: the run ends failed, and a stream says so
with an `event: error` instead of its remaining events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from .responses import SimulatorError, bad_request, header_number

FAULT_HEADER = "X-Simulator-Fault"
RETRY_AFTER_HEADER = "X-Simulator-Retry-After"


class FaultKind(StrEnum):
    HTTP = "http"
    HANG = "hang"
    HANG_MID_STREAM = "hang-mid-stream"
    DROP = "drop"
    ERROR_EVENT = "error-event"
    RUN_FAILED = "run-failed"
    RUN_INCOMPLETE = "run-incomplete"


_MID_STREAM = frozenset({FaultKind.HANG_MID_STREAM, FaultKind.DROP, FaultKind.ERROR_EVENT})


class Outcome(StrEnum):
    """How a run ends when a fault decides it instead of the recording."""

    FAILED = "failed"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 0  # for `http-<status>`
    after: int = 0  # events sent before a mid-stream fault

    @property
    def mid_stream(self) -> bool:
        return self.kind in _MID_STREAM

    @property
    def outcome(self) -> Outcome | None:
        # An error event stands for a server failure, so the run it interrupts ends failed.
        if self.kind in (FaultKind.RUN_FAILED, FaultKind.ERROR_EVENT):
            return Outcome.FAILED
        if self.kind is FaultKind.RUN_INCOMPLETE:
            return Outcome.INCOMPLETE
        return None


FAULT = web.RequestKey("fault", Fault)


def parse_fault(value: str | None, default_after: int) -> Fault | None:
    if not value:
        return None
    spec = value.strip().lower()
    if spec.startswith("http-"):
        status = _integer(spec[5:], value)
        if not 400 <= status <= 599:
            raise _invalid(value)
        return Fault(FaultKind.HTTP, status=status)
    name, _, count = spec.partition(":")
    try:
        kind = FaultKind(name)
    except ValueError:
        raise _invalid(value) from None
    if kind is FaultKind.HTTP or (count and kind not in _MID_STREAM):
        raise _invalid(value)
    return Fault(kind, after=_integer(count, value) if count else default_after)


def http_fault(fault: Fault, retry_after: str | None, default_retry_after_s: float) -> SimulatorError:
    """The error OpenAI answers with that status, headers included."""
    type_, code, message = _CANNED.get(fault.status) or _generic(fault.status)
    headers = {}
    if fault.status == 429:
        seconds = default_retry_after_s
        if retry_after is not None:
            seconds = header_number(retry_after, RETRY_AFTER_HEADER, "seconds")
        headers = _rate_limit_headers(seconds)
    return SimulatorError(fault.status, message, type_=type_, code=code, headers=headers)


_CANNED: dict[int, tuple[str, str | None, str]] = {
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-sim***. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again later.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}


def _generic(status: int) -> tuple[str, str | None, str]:
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return type_, None, f"Simulated HTTP {status} error."


def _rate_limit_headers(seconds: float) -> dict[str, str]:
    # Echoed as given (HTTP wants whole seconds; fractions let tests retry fast).
    wait = f"{seconds:g}"
    return {
        "retry-after": wait,
        "retry-after-ms": str(round(seconds * 1000)),
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{wait}s",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "30000",
        "x-ratelimit-reset-tokens": "0s",
    }


def _integer(raw: str, value: str) -> int:
    if not raw.isdigit():
        raise _invalid(value)
    return int(raw)


def _invalid(value: str) -> SimulatorError:
    return bad_request(
        f"Invalid {FAULT_HEADER} '{value}'. Expected http-<status>, hang, hang-mid-stream[:N], drop[:N], "
        "error-event[:N], run-failed or run-incomplete."
    )
