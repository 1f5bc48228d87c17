"""A gateway (whole pipeline) and its simulator served from a background thread with their own loop,
for clients that block, like schemathesis's: a live URL, in this process."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web

from gateway.app import build_app
from gateway.cli.serve import SERVER_OPTIONS
from gateway.config import parse_config
from gateway.http.server import GatewayRunner
from gateway.simulator import SimulatorSettings, build_simulator_app
from tests.fuzz.support import ENV, DiscardSpans, full_pipeline


class LiveGateway:
    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-gateway", daemon=True)
        self._runners: list[web.AppRunner] = []
        self.url = ""

    def __enter__(self) -> LiveGateway:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, app: web.Application, runner: type[web.AppRunner] = web.AppRunner, **options: object) -> str:
        """`runner`: the gateway's own (`GatewayRunner`) or aiohttp's, for the simulator."""
        started = runner(app, handler_cancellation=True, access_log=None, **options)
        await started.setup()
        self._runners.append(started)
        site = web.TCPSite(started, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{started.addresses[0][1]}"

    async def _start(self) -> str:
        simulator = await self._serve(build_simulator_app(SimulatorSettings(poll_after_ms=1, hang_check_interval_s=0.01)))
        raw = full_pipeline(self._tmp_path)
        raw["upstream"]["base_url"] = f"{simulator}/v1"
        app = build_app(parse_config(raw, env=ENV), span_exporter=DiscardSpans())
        return await self._serve(app, GatewayRunner, **SERVER_OPTIONS)

    async def _stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
