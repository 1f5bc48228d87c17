"""Run the gateway (optionally with the simulator in-process) until SIGTERM, then drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gateway.app import build_app
from gateway.cli.logs import configure_logging
from gateway.config import Config
from gateway.http.server import GatewayRunner
from gateway.keys import UPSTREAM_OVERRIDE
from gateway.simulator import SimulatorSettings, build_simulator_app

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
is what cuts off a slowloris client. Run-call bodies have their own bound (`listen.body_timeout_s`)."""

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
    run_gateway(gateway_app(config, config_path, mock_upstream), config)


GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic collector's thresholds while serving (CPython's defaults: 700, 10, 10). Requests allocate
many short-lived containers that reference counting frees anyway; at the defaults, under load, the
collector ran every few requests and a full collection every second or so, 30-60 ms each with the
loop stopped: the p99 latency. Measured (bench/ config at saturation): 1.0 s of every 11 s in the
collector with the defaults, 0.35 s with these and the frozen start-up heap."""


DRAIN_GRACE_S = 1.0
"""aiohttp's own shutdown timeout is `listen.drain_timeout_s` plus this: the gateway cuts its open
streams at the drain timeout itself (`gateway/http/drain.py`), and each cut stream still writes its
final event and settles its run after that; aiohttp's timeout is only the backstop for the rest
(which it waits out twice before it cancels). Never 0 either: aiohttp reads 0 as "wait forever"."""


def run_gateway(app: Awaitable[web.Application], config: Config) -> None:
    """Serve until SIGTERM, then drain.

    What `web.run_app` does, on `GatewayRunner` (run_app's runner is always aiohttp's own, whose
    answer to a request it cannot parse quotes the request). SIGTERM and SIGINT raise
    `web.GracefulExit` out of the loop (the runner's handlers), then the serving task is cancelled,
    which drains (`runner.cleanup`) before anything else stops. (Several workers: gateway/cli/worker.py.)"""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    serving = loop.create_task(_serve(app, config))
    try:
        loop.run_until_complete(serving)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not serving.done():  # (a failed start-up keeps its own traceback: it is not awaited again)
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(serving)
        _close(loop)


def gateway_runner(app: web.Application, config: Config, *, handle_signals: bool) -> GatewayRunner:
    """The runner every gateway process serves `app` on, alone or as one of several workers, with
    the collector tuned for serving (`GC_THRESHOLDS`, the start-up heap frozen once `app` has
    started); `handle_signals`: aiohttp's SIGINT and SIGTERM handlers (a gunicorn worker has its own)."""
    gc.set_threshold(*GC_THRESHOLDS)
    app.on_startup.append(_freeze_heap)  # after every cleanup_ctx has started (they are registered first)
    return GatewayRunner(
        app,
        handle_signals=handle_signals,
        shutdown_timeout=config.listen.drain_timeout_s + DRAIN_GRACE_S,
        # A client that disconnects cancels its handler at once, so an idle upstream stream is
        # closed now rather than at its next chunk; stages clean up in `finally`.
        handler_cancellation=True,
        access_log=None,
        **SERVER_OPTIONS,
    )


async def _serve(app: Awaitable[web.Application], config: Config) -> None:
    runner = gateway_runner(await app, config, handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.listen.host, config.listen.port).start()
        await asyncio.Event().wait()  # until cancelled by run_gateway
    finally:
        await runner.cleanup()


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left once the gateway has drained, then close the loop."""
    left = asyncio.all_tasks(loop)
    for task in left:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


async def _freeze_heap(app: web.Application) -> None:
    """Everything alive once the app has started (modules, config, pools) lives until exit: moving it
    out of the collector's reach keeps full collections to what requests allocate."""
    gc.collect()
    gc.freeze()


def serve_simulator(host: str, port: int, settings: SimulatorSettings) -> None:
    configure_logging(Config().telemetry)
    log.info("simulator_listening", url=f"http://{host}:{port}/v1")
    web.run_app(build_simulator_app(settings), host=host, port=port, access_log=None, print=None, loop=new_event_loop())


async def gateway_app(
    config: Config, config_path: Path | None, mock_upstream: bool = False, simulator_url: str | None = None
) -> web.Application:
    """`simulator_url`: the one simulator of `--mock-upstream --workers N`, which every worker uses."""
    simulator = await start_simulator() if mock_upstream else None
    override = simulator.url if simulator is not None else simulator_url
    if override is not None:
        config = config.with_upstream(override)
    app = build_app(config, config_path=config_path)
    if override is not None:
        app[UPSTREAM_OVERRIDE] = override
    if simulator is not None:
        app.on_cleanup.append(lambda _app: simulator.runner.cleanup())
    log.info(
        "gateway_listening",
        url=f"http://{config.listen.host}:{config.listen.port}/v1",
        upstream=str(config.upstream.base_url),
        simulator=override is not None,
    )
    return app


@dataclass(frozen=True, slots=True)
class Simulator:
    runner: web.AppRunner
    url: str


async def start_simulator() -> Simulator:
    """The simulator on a free loopback port, in this process and loop."""
    runner = web.AppRunner(build_simulator_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return Simulator(runner, f"http://127.0.0.1:{port}/v1")
