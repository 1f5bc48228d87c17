"""`RunCall`: one run call's request-scoped state, built once; every stage takes it.

The caller, its tenant, the runtime the call started under, the shared state and the upstream pool
are fixed when the call begins; the stages fill in the rest in order (the body, the policy's
effective token caps, the headers the response reports). The `RunRecord` the observers read is the
tracker's: stages report to it, they do not read their working state back from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from gateway.domain import RunRecord
from gateway.keys import CALLER, RECORDER, REQUEST_ID, REQUEST_RUNTIME, SESSION, STATE, TRACE_ID
from gateway.pipeline.settle import Settlement
from gateway.pipeline.track import RunTracker
from gateway.runtime import Runtime
from gateway.runtime.auth import Caller
from gateway.schema.requests import RunRequest, RunRoute
from gateway.state import NO_KEY, StateStore


@dataclass(slots=True, eq=False)
class RunCall:
    request: web.Request
    route: RunRoute
    caller: Caller
    runtime: Runtime
    state: StateStore
    session: aiohttp.ClientSession
    tracker: RunTracker
    settlement: Settlement
    body: bytes = b""  # forwarded as is unless the policy changes it
    data: dict[str, Any] = field(default_factory=dict)  # the parsed body
    run_request: RunRequest | None = None  # the typed body
    caps: tuple[int, int] = (0, 0)  # the policy's effective max_prompt_tokens, max_completion_tokens (0: none)
    model: str | None = None  # the model the body names once the policy had its say (None: the assistant's)
    headers: dict[str, str] = field(default_factory=dict)  # what the response reports (policy changes, limits)

    @classmethod
    def begin(cls, request: web.Request, route: RunRoute) -> RunCall:
        started, started_ns = time.perf_counter(), time.time_ns()
        caller, runtime, state = request[CALLER], request[REQUEST_RUNTIME], request.app[STATE]
        record = RunRecord(
            request[REQUEST_ID],
            route.value,
            caller.tenant,
            started,
            started_ns,
            key_fingerprint=caller.fingerprint,
            client_address=request.remote,
            trace_id=request.get(TRACE_ID),
            policy=runtime.config.policy_name_for(caller.tenant),
        )
        settlement = Settlement(state, request.app[RECORDER], caller.tenant, caller.fingerprint or NO_KEY,
                                creates_run=route is not RunRoute.SUBMIT_TOOL_OUTPUTS,
                                creates_thread=route is RunRoute.CREATE_THREAD_AND_RUN)  # fmt: skip
        tracker = RunTracker(record, request.app[RECORDER], on_ids=settlement.on_ids,
                             model_map=runtime.config.upstream.model_map, price=runtime.pricing.cost)  # fmt: skip
        return cls(request, route, caller, runtime, state, request.app[SESSION], tracker, settlement)

    @property
    def reserve_tokens(self) -> int:
        """A run's worst case in tokens: what a token budget reserves."""
        return self.caps[0] + self.caps[1]

    @property
    def tenant(self) -> str:
        return self.caller.tenant

    @property
    def record(self) -> RunRecord:
        return self.tracker.record
