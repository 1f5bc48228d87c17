"""Run the gateway (optionally with the simulator in-process) until SIGTERM, then drain."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from .app import build_app
from .config import Config
from .context import UPSTREAM_OVERRIDE
from .logs import configure_logging
from .simulator import SimulatorSettings, build_simulator_app

log = structlog.get_logger("gateway")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional off Linux/macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


KEEPALIVE_TIMEOUT_S = 75.0
"""An idle keep-alive connection is closed after this long; it is also the most a client gets to send
a request's headers (aiohttp's timer runs from the connection's start or its last response), which
is what cuts off a slowloris client. Run-call bodies have their own bound (`validate.BODY_TIMEOUT_S`)."""

LINGERING_TIME_S = 2.0
"""After refusing a request whose body is still coming (413, 408, ...), aiohttp reads and discards the
rest for this long, so a client that is still sending gets to see the answer; then it closes.
aiohttp's default, 10 s, would let a refused slow client hold the connection that much longer."""

SERVER_OPTIONS: dict[str, Any] = {
    "keepalive_timeout": KEEPALIVE_TIMEOUT_S,
    "lingering_time": LINGERING_TIME_S,
    # Bodies pass through as sent: a compressed upload reaches the upstream compressed, with its
    # Content-Encoding; run calls refuse compressed bodies (validate.py).
    "auto_decompress": False,
}
"""aiohttp server settings besides the app's; tests start their servers with them too."""


def serve(config: Config, *, config_path: Path | None = None, mock_upstream: bool = False) -> None:
    configure_logging(config.telemetry)
    web.run_app(
        _gateway_app(config, config_path, mock_upstream),
        host=config.listen.host,
        port=config.listen.port,
        shutdown_timeout=config.listen.drain_timeout_s,
        # A client that disconnects cancels its handler at once, so an idle upstream stream is
        # closed now rather than at its next chunk; stages clean up in `finally`.
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=new_event_loop(),
        **SERVER_OPTIONS,
    )


def serve_simulator(host: str, port: int, settings: SimulatorSettings) -> None:
    configure_logging(Config().telemetry)
    log.info("simulator_listening", url=f"http://{host}:{port}/v1")
    web.run_app(build_simulator_app(settings), host=host, port=port, access_log=None, print=None, loop=new_event_loop())


async def _gateway_app(config: Config, config_path: Path | None, mock_upstream: bool) -> web.Application:
    simulator = await _start_simulator() if mock_upstream else None
    if simulator is not None:
        config = config.with_upstream(simulator.url)
    app = build_app(config, config_path=config_path)
    if simulator is not None:
        app[UPSTREAM_OVERRIDE] = simulator.url
        app.on_cleanup.append(lambda _app: simulator.runner.cleanup())
    log.info(
        "gateway_listening",
        url=f"http://{config.listen.host}:{config.listen.port}/v1",
        upstream=str(config.upstream.base_url),
        simulator=mock_upstream,
    )
    return app


@dataclass(frozen=True, slots=True)
class _Simulator:
    runner: web.AppRunner
    url: str


async def _start_simulator() -> _Simulator:
    """The simulator on a free loopback port, in this process and loop."""
    runner = web.AppRunner(build_simulator_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return _Simulator(runner, f"http://127.0.0.1:{port}/v1")
