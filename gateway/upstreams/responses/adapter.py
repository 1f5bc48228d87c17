"""The facade: the Assistants API served on the Responses + Conversations API (`upstream.protocol: responses`).

The I/O edge of the translation: it calls the upstream (a conversation for a new thread, a response
per run) and answers the relay with an Assistants-shaped reply, translated by the pure
`requests.py` (run → response request) and `events.py` (response events → run events) as each
upstream event arrives. Threads are conversations (the thread id is the conversation id);
assistants are the platform's own (`assistants:` in the config).

Served so far: `POST /v1/threads/runs` and `.../runs/{id}/submit_tool_outputs`, streamed (a tool round
is a new response in the same conversation; the run keeps its id and sums the usage),
`GET /v1/threads/{id}/runs/{id}`, `GET /v1/assistants` and `GET /v1/assistants/{id}`. A run is kept
in the state store (`run:<id>`, for `RUN_TTL_S`). Every other route answers a clear 404 in OpenAI's
envelope, never a guess.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.config import Config
from gateway.domain import json_object
from gateway.errors import error_body, upstream_failure
from gateway.http.sse import SSEParser
from gateway.http.upstream import Reply, send, strip_hop_by_hop
from gateway.ids import token
from gateway.state import StateStore, StateUnavailable
from gateway.upstreams import Call
from gateway.upstreams.responses import objects
from gateway.upstreams.responses.events import RunEvents
from gateway.upstreams.responses.objects import RunSpec
from gateway.upstreams.responses.replies import JsonReply, StreamReply
from gateway.upstreams.responses.requests import input_messages, response_request, run_spec, thread_messages

log = structlog.get_logger("gateway.facade")
RUN_TTL_S = 7 * 24 * 3600.0  # a run can be read (and continued) this long after its last event
_NOT_SERVED = (
    "{method} {path} is not served yet when the gateway serves the Assistants API on the Responses API "
    "(upstream.protocol: responses)."
)


class ResponsesFacade:
    def __init__(self, config: Config) -> None:
        self.config = config
        upstream = config.upstream
        self._base = str(upstream.base_url).rstrip("/")
        self._model_map = upstream.model_map
        self._assistants = config.assistants
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=upstream.connect_timeout_s, sock_read=upstream.read_timeout_s
        )
        self._created_at = int(time.time())  # platform-defined assistants exist since the config was loaded

    def headers(self, incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None) -> CIMultiDict[str]:
        headers = strip_hop_by_hop(incoming)
        for name in ("Authorization", "OpenAI-Beta", "Content-Length"):  # the beta header is the Assistants API's
            headers.popall(name, None)
        if authorization:
            headers["Authorization"] = authorization
        headers["X-Request-ID"] = request_id
        return headers

    async def forward(self, call: Call) -> Reply:
        parts = call.raw_path.strip("/").split("/")
        if call.method == "POST" and parts == ["threads", "runs"]:
            return await self._create_thread_and_run(call)
        if len(parts) >= 4 and parts[0] == "threads" and parts[2] == "runs":
            if call.method == "GET" and len(parts) == 4:
                return await self._retrieve_run(call, parts[1], parts[3])
            if call.method == "POST" and parts[4:] == ["submit_tool_outputs"]:
                return await self._submit_tool_outputs(call, parts[1], parts[3])
        if call.method == "GET" and parts[0] == "assistants" and len(parts) <= 2:
            return self._assistant(call.tenant, parts[1]) if len(parts) == 2 else self._assistant_list(call.tenant)
        return JsonReply.error(404, _NOT_SERVED.format(method=call.method, path=f"/v1{call.raw_path}"), "not_found")

    async def fetch(
        self,
        session: aiohttp.ClientSession,
        api_path: str,
        authorization: str | None,
        *,
        request_id: str | None = None,
        client_headers: CIMultiDictProxy[str] | None = None,
    ) -> tuple[int, bytes, str]:
        parts = api_path.strip("/").split("/")
        if parts[0] == "assistants" and len(parts) == 2 and parts[1] in self._assistants:
            return 200, orjson.dumps(self._assistants[parts[1]].as_json(parts[1], self._created_at)), "application/json"
        return 404, error_body(f"No object found at {api_path}.", "invalid_request_error"), "application/json"

    # --- assistants ------------------------------------------------------------------------------

    def _assistant(self, tenant: str, assistant_id: str) -> JsonReply:
        assistant = self._assistants.get(assistant_id)
        if assistant is None or not assistant.open_to(tenant):
            return JsonReply.error(404, f"No assistant found with id '{assistant_id}'.", None)
        return JsonReply(200, assistant.as_json(assistant_id, self._created_at))

    def _assistant_list(self, tenant: str) -> JsonReply:
        data = [a.as_json(i, self._created_at) for i, a in sorted(self._assistants.items()) if a.open_to(tenant)]
        return JsonReply(200, {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                               "last_id": data[-1]["id"] if data else None, "has_more": False})  # fmt: skip

    # --- runs ------------------------------------------------------------------------------------

    async def _create_thread_and_run(self, call: Call) -> Reply:
        body = json_object(call.body if isinstance(call.body, bytes) else b"")
        assistant_id = str(body.get("assistant_id"))
        assistant = self._assistants.get(assistant_id)
        if assistant is None or not assistant.open_to(call.tenant):
            return JsonReply.error(404, f"No assistant found with id '{assistant_id}'.", None)
        if body.get("stream") is not True:
            return JsonReply.error(
                400, "Runs are served streamed only so far in responses mode: send stream: true.", "unsupported_value",
                param="stream",
            )  # fmt: skip
        found = body.get("thread")
        thread_body: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        status, conversation = await self._post(call, "/conversations", {"metadata": thread_body.get("metadata") or {}})
        if status != 200 or not isinstance(conversation.get("id"), str):
            return JsonReply(status if status >= 400 else 502, conversation)
        thread_id, created_at = conversation["id"], int(conversation.get("created_at") or time.time())
        spec = run_spec(f"run_{token()}", thread_id, assistant_id, assistant.model_dump(), body, int(time.time()))
        request = response_request(
            spec, thread_id, self._model_map.get(spec.model, spec.model), input_messages(thread_messages(body)), True
        )
        response = await self._open(call, "/responses", request)
        if response.status != 200:
            return response
        thread = objects.thread(thread_id, created_at, thread_body.get("metadata"))
        return StreamReply(_translated(response, RunEvents(spec, new_thread=thread), _keeper(call.state)))

    async def _retrieve_run(self, call: Call, thread_id: str, run_id: str) -> Reply:
        kept = await _kept_run(call.state, thread_id, run_id)
        if kept is None:
            return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
        return JsonReply(200, kept["run"])

    async def _submit_tool_outputs(self, call: Call, thread_id: str, run_id: str) -> Reply:
        kept = await _kept_run(call.state, thread_id, run_id)
        if kept is None:
            return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
        status = kept["run"]["status"]
        if status != "requires_action":
            return JsonReply.error(400, f"Runs in status \"{status}\" do not accept tool outputs.", None)
        body = json_object(call.body if isinstance(call.body, bytes) else b"")
        if body.get("stream") is not True:
            return JsonReply.error(
                400, "Tool outputs are served streamed only so far in responses mode: send stream: true.",
                "unsupported_value", param="stream",
            )  # fmt: skip
        spec = RunSpec(**kept["spec"])
        outputs = [{"type": "function_call_output", "call_id": o.get("tool_call_id"), "output": o.get("output", "")}
                   for o in body.get("tool_outputs") or () if isinstance(o, Mapping)]  # fmt: skip
        request = response_request(spec, thread_id, self._model_map.get(spec.model, spec.model), outputs, True)
        response = await self._open(call, "/responses", request)
        if response.status != 200:
            return response
        events = RunEvents(spec, prior_usage=kept.get("usage"), continuing=True)
        return StreamReply(_translated(response, events, _keeper(call.state)))

    # --- upstream calls --------------------------------------------------------------------------

    async def _post(self, call: Call, path: str, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        response = await self._open(call, path, payload)
        async with response:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise upstream_failure(exc, self._timeout) from None
        return response.status, dict(json_object(raw))

    async def _open(self, call: Call, path: str, payload: Mapping[str, Any]) -> aiohttp.ClientResponse:
        headers = CIMultiDict(call.headers)
        headers["Content-Type"] = "application/json"
        url = URL(f"{self._base}{path}", encoded=True)
        return await send(call.session, "POST", url, headers, orjson.dumps(payload), self._timeout)


Keeper = Callable[[RunEvents], Awaitable[None]]


def _keeper(state: StateStore) -> Keeper:
    async def keep(events: RunEvents) -> None:
        """The run as it stands, so it can be read and continued (by any replica, with Redis state)."""
        record = {"spec": dataclasses.asdict(events.spec), "run": events.last_run, "usage": events.usage}
        try:
            await state.put_record("run", events.spec.run_id, orjson.dumps(record), RUN_TTL_S)
        except StateUnavailable:  # the stream goes on; only reading or continuing the run later fails
            log.warning("state_unavailable", step="keep_run", run_id=events.spec.run_id)

    return keep


async def _kept_run(state: StateStore, thread_id: str, run_id: str) -> dict[str, Any] | None:
    raw = await state.get_record("run", run_id)
    kept = json_object(raw) if raw is not None else {}
    spec = kept.get("spec")
    if not isinstance(spec, Mapping) or spec.get("thread_id") != thread_id or not isinstance(kept.get("run"), Mapping):
        return None
    return dict(kept)


async def _translated(response: aiohttp.ClientResponse, events: RunEvents, keep: Keeper) -> AsyncGenerator[bytes]:
    """The run's Assistants events, each written as soon as the upstream event that makes it arrives;
    the run is kept when it starts and when this response ends it (or pauses it for tool outputs)."""
    parser = SSEParser()
    try:
        yield events.start()
        await keep(events)
        async for chunk in response.content.iter_any():
            out = b"".join(events.feed(event) for event in parser.feed(chunk))
            if out:
                yield out
        tail = events.end()
        await keep(events)
        yield tail
    finally:
        response.release()
