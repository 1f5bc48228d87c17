"""Run the gateway (optionally with the simulator in-process) until SIGTERM, then drain."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from pydantic import HttpUrl

from .app import build_app
from .config import Config
from .logs import configure_logging
from .simulator import SimulatorSettings, build_simulator_app

log = structlog.get_logger("gateway")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional off Linux/macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(config: Config, *, mock_upstream: bool = False) -> None:
    configure_logging(config.telemetry)
    web.run_app(
        _gateway_app(config, mock_upstream),
        host=config.listen.host,
        port=config.listen.port,
        shutdown_timeout=config.listen.drain_timeout_s,
        # A client that disconnects cancels its handler at once, so an idle upstream stream is
        # closed now rather than at its next chunk; stages clean up in `finally`.
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=new_event_loop(),
    )


def serve_simulator(host: str, port: int, settings: SimulatorSettings) -> None:
    configure_logging(Config().telemetry)
    log.info("simulator_listening", url=f"http://{host}:{port}/v1")
    web.run_app(build_simulator_app(settings), host=host, port=port, access_log=None, print=None, loop=new_event_loop())


async def _gateway_app(config: Config, mock_upstream: bool) -> web.Application:
    runner = None
    if mock_upstream:
        runner = web.AppRunner(build_simulator_app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        upstream = config.upstream.model_copy(update={"base_url": HttpUrl(f"http://127.0.0.1:{port}/v1")})
        config = config.model_copy(update={"upstream": upstream})
    app = build_app(config)
    if runner is not None:
        app.on_cleanup.append(lambda _app: runner.cleanup())
    log.info(
        "gateway_listening",
        url=f"http://{config.listen.host}:{config.listen.port}/v1",
        upstream=str(config.upstream.base_url),
        simulator=mock_upstream,
    )
    return app
