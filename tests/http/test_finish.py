"""`to_the_end`: what a call has begun is finished even when its client leaves (its handler cancelled)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.finish import to_the_end


async def test_a_cancelled_caller_waits_for_the_work_then_is_cancelled():
    release, done = asyncio.Event(), []

    async def work() -> str:
        await release.wait()
        done.append("settled")
        return "settled"

    caller = asyncio.create_task(to_the_end(work()))
    await asyncio.sleep(0)
    caller.cancel()  # the client left
    await asyncio.sleep(0.01)
    caller.cancel()  # and again: still the work goes on
    await asyncio.sleep(0.01)
    assert not caller.done() and done == []
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["settled"]


async def test_an_uncancelled_caller_gets_the_result_or_the_error():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def failing() -> None:
        await asyncio.sleep(0)
        raise LookupError("state")

    assert await to_the_end(answer()) == 42
    with pytest.raises(LookupError):
        await to_the_end(failing())
