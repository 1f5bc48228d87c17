"""The admin API (`Authorization: Bearer <admin key>`; off without `admin.keys`): reload, usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.config.pricing import usd
from gateway.errors import InvalidRequest, NotFound
from gateway.keys import FAILED_ATTEMPTS, RELOAD_WORKERS, REQUEST_RUNTIME, RUNTIME, STATE
from gateway.ops.reload import reload_config
from gateway.runtime.auth import KeyRing

USAGE_DAYS = 30


def _require_admin(request: web.Request) -> None:
    runtime = request[REQUEST_RUNTIME]
    if not runtime.admin_keys:
        raise NotFound(f"Unknown request URL: {request.method} {request.path}. The admin API is off (no admin.keys).")
    check_own_key(request.app, request, runtime.admin_keys)


def check_own_key(app: web.Application, request: web.Request, keys: KeyRing) -> None:
    """A key for the gateway's own endpoints (`app` is the gateway's, whichever app serves `request`):
    401 if wrong, 429 once the client's address has failed too often (`admin.failed_attempts`)."""
    limit = app[RUNTIME].current.config.admin.failed_attempts
    app[FAILED_ATTEMPTS].check_key(keys, request.headers.get("Authorization"), request.remote or "unknown", limit)


async def admin_reload(request: web.Request) -> web.Response:
    _require_admin(request)
    result = await reload_config(request.app)
    if not result.ok:
        raise InvalidRequest(
            "The new config was refused; the old one keeps serving: " + "; ".join(result.problems),
            code="invalid_config",
        )
    if RELOAD_WORKERS in request.app:  # one worker of several answered: every worker reloads from the same file
        request.app[RELOAD_WORKERS]()
    return web.json_response({"status": "reloaded", "summary": request.app[RUNTIME].current.config.summary()})


async def admin_usage(request: web.Request) -> web.Response:
    """Runs, tokens and their cost per tenant, key, model and UTC day, from the ledger the budgets use."""
    _require_admin(request)
    tenant = request.query.get("tenant") or None
    since = request.query.get("since") or (datetime.now(UTC) - timedelta(days=USAGE_DAYS)).date().isoformat()
    try:
        datetime.strptime(since, "%Y-%m-%d")
    except ValueError:
        raise InvalidRequest("since must be a date like 2026-11-01.", param="since", code="invalid_value") from None
    rows = await request.app[STATE].usage(tenant, since)  # StateUnavailable is the client's 503
    return web.json_response(
        {
            "object": "list",
            "since": since,
            "data": [
                {
                    "tenant": row.tenant,
                    "key": row.key,
                    "model": row.model,
                    "day": row.day,
                    "runs": row.runs,
                    "prompt_tokens": row.prompt_tokens,
                    "completion_tokens": row.completion_tokens,
                    "total_tokens": row.total_tokens,
                    "cost_usd": usd(row.cost_micros),
                }
                for row in rows
            ],
        }
    )
