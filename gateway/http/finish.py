"""Bookkeeping the gateway owes whether or not its client stays to the end.

The gateway is served with `handler_cancellation` (a client that leaves cancels its handler at once,
so an idle upstream stream is closed now rather than at its next chunk). A cancellation that lands
while a state change is on its way to Redis leaves it half done: the script may run there (the run
marked settled, the ledger counting it) while the code after it never runs (the runs metric never
counting it, since no later look settles a run twice). So what follows a state change the call has
begun is awaited to its end, and the cancellation is raised once it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def to_the_end(work: Awaitable[T]) -> T:
    """`work`'s result, awaited to its end however often the caller is cancelled meanwhile; a
    cancellation is raised after it (each state call is bounded by the state's own deadline)."""
    task = asyncio.ensure_future(work)
    gone: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.cancelled():  # the work itself was cancelled (the loop is closing): nothing to wait for
                raise
            gone = exc
            continue
        break
    if gone is not None:
        raise gone
    return result
