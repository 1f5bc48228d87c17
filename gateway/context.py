"""Typed keys for what hangs off the application and off each request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from .auth import Caller
from .record import Recorder
from .runtime import Runtime, RuntimeHolder
from .state import StateStore
from .telemetry.audit import AuditLog


class Readiness:
    """Flipped by the lifecycle: ready once the upstream pool exists, not ready while draining."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False


RUNTIME = web.AppKey("runtime", RuntimeHolder)
CONFIG_PATH = web.AppKey("config_path", Path)  # absent: nothing to reload from
UPSTREAM_OVERRIDE = web.AppKey("upstream_override", str)  # --mock-upstream: survives reloads
SESSION = web.AppKey("session", aiohttp.ClientSession)
STATE = web.AppKey("state", StateStore)  # ownership, limits, reservations, the usage ledger
RECORDER = web.AppKey("recorder", Recorder)
AUDIT = web.AppKey("audit", AuditLog)  # absent: audit off
READINESS = web.AppKey("readiness", Readiness)
# A worker of `serve --workers N`: asks the parent to reload the other workers too.
RELOAD_PEERS: web.AppKey[Callable[[], None]] = web.AppKey("reload_peers")

REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
REQUEST_RUNTIME = web.RequestKey("runtime", Runtime)
TRACE_ID = web.RequestKey("trace_id", str)  # set by tracing, when it is on
