"""Typed keys for what hangs off the application and off each request."""

from __future__ import annotations

from aiohttp import web

from .auth import Authenticator, Caller
from .config import Config
from .record import Recorder
from .upstream import Upstream


class Readiness:
    """Flipped by the lifecycle: ready once the upstream pool exists, not ready while draining."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False


CONFIG = web.AppKey("config", Config)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
UPSTREAM = web.AppKey("upstream", Upstream)
RECORDER = web.AppKey("recorder", Recorder)
READINESS = web.AppKey("readiness", Readiness)

REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
