"""`GET /healthz` (the process is up) and `GET /readyz` (the upstream pool is ready; 503 while draining)."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import READINESS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    if readiness.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not readiness.ready:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})
