"""Typed keys for what hangs off the application and off each request (no globals)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.domain import Recorder
from gateway.http.drain import DrainDeadline
from gateway.runtime import Runtime, RuntimeHolder
from gateway.runtime.attempts import FailedAttempts
from gateway.runtime.auth import Caller
from gateway.state import StateStore


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
RECORDER = web.AppKey("recorder", Recorder)  # the observers: run events, reloads, budgets, outages
# Audit backpressure: one permit per run call whose two audit records are not written yet. Admission
# takes one; the audit writer gives it back once the outcome record is written. Absent: audit off.
AUDIT_ROOM = web.AppKey("audit_room", asyncio.Semaphore)
# `audit.on_failure: fail_closed`: whether the audit writer can write now (False from a failed write
# until one succeeds). Admission refuses run calls and /readyz says not ready while it is False.
AUDIT_WRITABLE: web.AppKey[Callable[[], bool]] = web.AppKey("audit_writable")
READINESS = web.AppKey("readiness", Readiness)
FAILED_ATTEMPTS = web.AppKey("failed_attempts", FailedAttempts)  # wrong admin / metrics keys, per address
DRAIN = web.AppKey("drain", DrainDeadline)  # set off on shutdown: streams still open then are cut
# A worker of `serve --workers N`: asks the arbiter to reload every worker (this one again: the same file).
RELOAD_WORKERS: web.AppKey[Callable[[], None]] = web.AppKey("reload_workers")

REQUEST_ID = web.RequestKey("request_id", str)
CALLER = web.RequestKey("caller", Caller)
REQUEST_RUNTIME = web.RequestKey("runtime", Runtime)
TRACE_ID = web.RequestKey("trace_id", str)  # set by tracing, when it is on
