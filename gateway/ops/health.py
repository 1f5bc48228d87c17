"""`GET /healthz` (the process is up) and `GET /readyz` (the upstream pool is ready; 503 while draining,
while shared state is down under `state.on_failure: fail_closed`, and while the audit log cannot be written
under `audit.on_failure: fail_closed`)."""

from __future__ import annotations

from aiohttp import web

from gateway.keys import AUDIT_WRITABLE, READINESS, STATE
from gateway.state.resilient import ResilientState


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    if readiness.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not readiness.ready:
        return web.json_response({"status": "starting"}, status=503)
    state = request.app[STATE]
    if isinstance(state, ResilientState) and not await state.available():  # fail_closed: every limited call 503s
        return web.json_response({"status": "state_unavailable"}, status=503)
    writable = request.app.get(AUDIT_WRITABLE)
    if writable is not None and not writable():  # audit fail_closed: every run call 503s
        return web.json_response({"status": "audit_unavailable"}, status=503)
    return web.json_response({"status": "ready"})
