"""Knobs of the simulator; every one has a default that behaves like a fast, healthy OpenAI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatorSettings:
    # Pause between two stream events; the `X-Simulator-Event-Delay-Ms` header overrides it.
    event_delay_ms: float = 0.0
    # Sent as `openai-poll-after-ms` on unfinished runs; the SDK's poll helpers sleep that long.
    poll_after_ms: int = 25
    # Events sent before `drop`, `hang-mid-stream` and `error-event` strike, unless `:N` says.
    fault_after_events: int = 3
    # `retry-after` of a simulated 429, unless `X-Simulator-Retry-After` says.
    retry_after_s: float = 1.0
    # How often a hung request checks whether its client is still there.
    hang_check_interval_s: float = 0.05
    # A long benchmark must not grow memory without bound: beyond these, the oldest recorded
    # request / the oldest thread (with its messages and runs) is forgotten.
    retain_requests: int = 10_000
    retain_threads: int = 10_000
    # Largest request body accepted (file uploads); OpenAI's own limit is 512 MB.
    max_request_bytes: int = 512 * 1024 * 1024
