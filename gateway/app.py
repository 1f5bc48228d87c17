"""Build the aiohttp Application from a Config: routes, middlewares, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from . import middlewares
from .auth import Authenticator
from .config import Config
from .context import AUTHENTICATOR, CONFIG, READINESS, RECORDER, UPSTREAM, Readiness
from .openai_types import RunRoute
from .proxy import API_ROOT, passthrough, run_call
from .record import Recorder, RunLog
from .upstream import Upstream, make_session


def build_app(config: Config, recorder: Recorder | None = None) -> web.Application:
    app = web.Application(
        middlewares=[middlewares.request_id, middlewares.errors, middlewares.authenticate],
        client_max_size=config.listen.max_body_bytes,
    )
    app[CONFIG] = config
    app[AUTHENTICATOR] = Authenticator(config)
    app[RECORDER] = recorder if recorder is not None else Recorder([RunLog()])
    app[READINESS] = Readiness()
    app.cleanup_ctx.append(_upstream_pool)
    app.on_shutdown.append(_start_draining)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    threads = f"{API_ROOT}/threads"
    app.router.add_post(f"{threads}/runs", run_call(RunRoute.CREATE_THREAD_AND_RUN))
    app.router.add_post(f"{threads}/{{thread_id}}/runs", run_call(RunRoute.CREATE_RUN))
    app.router.add_post(
        f"{threads}/{{thread_id}}/runs/{{run_id}}/submit_tool_outputs", run_call(RunRoute.SUBMIT_TOOL_OUTPUTS)
    )
    app.router.add_route("*", f"{API_ROOT}/{{tail:.*}}", passthrough)
    return app


async def _upstream_pool(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].upstream
    async with make_session(config) as session:
        app[UPSTREAM] = Upstream(config, session)
        app[READINESS].ready = True
        yield
        app[READINESS].ready = False


async def _start_draining(app: web.Application) -> None:
    app[READINESS].draining = True


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    if readiness.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not readiness.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})
