"""`GET /metrics` (tenant names, budgets): behind keys when `telemetry.metrics.keys` are set, and on
its own port when `telemetry.metrics.port` is (then the main port answers 404 for it), so it can be
reachable only from where Prometheus scrapes.

The scrape is this process's registry, or with `--workers N` the sum over every worker (the body
comes from `exposition`); with several workers each binds the metrics port with SO_REUSEPORT, as it
does the main one, and whichever the kernel picks answers with the same sum.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.config import Config
from gateway.errors import GatewayError, NotFound
from gateway.keys import RUNTIME
from gateway.ops.admin import check_own_key

Lifecycle = Callable[[web.Application], AsyncIterator[None]]

SITE_SHUTDOWN_S = 1.0  # a scrape is one quick answer: nothing to drain on the metrics port


def serve_metrics(app: web.Application, config: Config, exposition: Callable[[], bytes]) -> None:
    """Route /metrics on the gateway `app`, or start it with the app on its own port."""
    scrape, own = metrics_endpoint(app, exposition), config.telemetry.metrics
    if own.port is None:
        app.router.add_get("/metrics", scrape)
        return
    reuse_port = config.listen.workers > 1  # each worker binds it, as it does the main port
    app.cleanup_ctx.append(metrics_site(scrape, own.host or config.listen.host, own.port, reuse_port=reuse_port))


def metrics_endpoint(app: web.Application, exposition: Callable[[], bytes]) -> Handler:
    """The scrape handler of the gateway `app`, whichever app serves it (the main one or the metrics site)."""

    async def scrape(request: web.Request) -> web.StreamResponse:
        keys = app[RUNTIME].current.metrics_keys  # follows reloads
        try:
            if keys:
                check_own_key(app, request, keys)
        except GatewayError as exc:  # (the metrics site has no error middleware: answered here, for both)
            return exc.to_response()
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return scrape


def metrics_site(scrape: Handler, host: str, port: int, *, reuse_port: bool) -> Lifecycle:
    """cleanup_ctx: /metrics on `host:port`, up while the gateway is (scrapes go on while it drains)."""

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        site_app = web.Application()
        site_app.router.add_get("/metrics", scrape)
        site_app.router.add_route("*", "/{tail:.*}", _not_found)
        runner = web.AppRunner(site_app, access_log=None, shutdown_timeout=SITE_SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
            yield
        finally:
            await runner.cleanup()

    return lifecycle


async def _not_found(request: web.Request) -> web.StreamResponse:
    message = f"Unknown request URL: {request.method} {request.path}. Only GET /metrics is served on this port."
    return NotFound(message).to_response()
