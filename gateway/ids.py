"""Identifiers the gateway mints per request: unique, cheap, and not secret.

Request ids, token reservations and concurrency leases only need to be unique, never unguessable,
so they come from `random` (a Mersenne Twister seeded from the OS at start-up, separately in every
process) rather than `secrets`/`uuid4`, which read the kernel's entropy pool on every call: a
system call per id, and on virtualised machines a slow one (tens of µs, measured in bench/).
"""

from __future__ import annotations

import random


def token(bits: int = 128) -> str:
    """`bits` random bits as lower-case hex (no prefix)."""
    return f"{random.getrandbits(bits):0{bits // 4}x}"


def request_id() -> str:
    """A request id the gateway mints (the `X-Request-ID` of an answer whose caller chose none)."""
    return f"req_gw_{token(96)}"
