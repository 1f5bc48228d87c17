"""The reconciler's lifecycle: it stops with the app, whatever its state calls do with a cancellation."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.config import parse_config
from gateway.keys import RUNTIME
from gateway.ops import reconcile
from gateway.runtime import Runtime, RuntimeHolder


async def test_the_reconciler_stops_even_when_a_state_call_swallows_its_cancellation(monkeypatch):
    # redis-py can swallow a cancellation that lands mid-command (seen with 8.1 on Python 3.11):
    # the app's shutdown then waited on the reconciler forever.
    entered = asyncio.Event()

    async def swallowing(app: web.Application, now: float | None = None) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass

    async def nothing_due(app: web.Application, now: float | None = None) -> int:
        return 0

    monkeypatch.setattr(reconcile, "publish_budgets", swallowing)
    monkeypatch.setattr(reconcile, "reconcile_once", nothing_due)
    app = web.Application()
    app[RUNTIME] = RuntimeHolder(Runtime.from_config(parse_config({})))
    lifecycle = reconcile.reconciler(app)
    await anext(lifecycle)
    await entered.wait()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(lifecycle), 5)
