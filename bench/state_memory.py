"""Bytes the memory state keeps per remembered object and per run call (tracemalloc, ids included).

    python bench/state_memory.py [--calls 100000]

`claims`: a thread and its run claimed (two remembered objects), nothing else; `settled`: a whole
run call whose run ended (lease, reservation, claim, bind, settle, slot released); `held`: a run
call whose run never ended (its concurrency slot and reservation held until they expire). Issue 15's
target is ≤ 300 bytes per remembered object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import string
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gateway.domain import TokenLimits, Usage  # noqa: E402
from gateway.state import PendingRun  # noqa: E402
from gateway.state.memory import MemoryState  # noqa: E402

_CHARS = string.ascii_letters + string.digits


def _id(prefix: str) -> str:
    return f"{prefix}_{''.join(random.choices(_CHARS, k=24))}"  # OpenAI's shape: 24 characters after the prefix


async def one_call(state: MemoryState, mode: str, now: float) -> None:
    thread, run, lease = _id("thread"), _id("run"), _id("lease")
    if mode == "claims":
        await state.claim("team", thread, run)
        return
    await state.acquire("team", "runs:team", lease, 10**9, 3600)
    await state.reserve(lease, "team", 2000, TokenLimits(per_day=10**12), now)
    await state.claim("team", thread, run)
    await state.bind(lease, PendingRun(run, thread, "team", now, now, "fp_0123456789ab"))
    if mode == "held":
        await state.hold_for_run("team", run, ["runs:team"], lease, 600)
        return
    await state.release("team", "runs:team", lease)
    await state.settle(run, "team", "gpt-4o", Usage(100, 20, 120), now, key="fp_0123456789ab", cost=10)
    await state.release_run("team", run)


async def measure(mode: str, calls: int) -> float:
    state = MemoryState(max_owned_objects=10 * calls)
    now = time.time()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(calls):
        await one_call(state, mode, now)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await state.close()
    return grown / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    for mode in ("claims", "settled", "held"):
        per_call = asyncio.run(measure(mode, args.calls))
        extra = f" ({per_call / 2:.0f} per remembered object)" if mode == "claims" else ""
        print(f"{mode:>8}: {per_call:.0f} bytes per run call{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
