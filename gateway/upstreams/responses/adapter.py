"""The facade: the Assistants API served on the Responses + Conversations API (`upstream.protocol: responses`).

The routing edge of the translation: each Assistants call the SDK makes goes to the module that
serves it (`runs.py`, `threads.py`); the pure `requests.py` and `events.py` do the translating.
Threads are conversations (the thread id is the conversation id); assistants are the platform's
own (`assistants:` in the config); files and vector stores are the same API on both sides and pass
through as they are. Every route not served yet answers a clear 404 in OpenAI's envelope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config import Config
from gateway.domain import json_object
from gateway.errors import error_body
from gateway.http.upstream import Reply, outgoing_headers
from gateway.state import StateStore
from gateway.upstreams import Call
from gateway.upstreams.assistants import AssistantsUpstream
from gateway.upstreams.responses import runs, threads
from gateway.upstreams.responses.assistants import Assistants, not_found
from gateway.upstreams.responses.client import ResponsesClient
from gateway.upstreams.responses.objects import RunSpec
from gateway.upstreams.responses.replies import JsonReply
from gateway.upstreams.responses.requests import merge_tool_resources, thread_messages

_PASSED_THROUGH = ("files", "vector_stores")  # the same API behind both protocols
_NOT_SERVED = (
    "{method} {path} is not served yet when the gateway serves the Assistants API on the Responses API "
    "(upstream.protocol: responses)."
)
Route = Callable[[Call, list[str]], Coroutine[Any, Any, Reply]]


class ResponsesFacade:
    def __init__(self, config: Config) -> None:
        self.client = ResponsesClient(config.upstream)
        self._passthrough = AssistantsUpstream(config.upstream)
        self._model_map = config.upstream.model_map
        self.assistants = Assistants(config.assistants)

    def headers(self, incoming: CIMultiDictProxy[str], request_id: str, authorization: str | None) -> CIMultiDict[str]:
        return outgoing_headers(incoming, request_id, authorization, drop=("OpenAI-Beta", "Content-Length"))  # (the
        # beta header is the Assistants API's; each call the facade makes has its own length)

    async def forward(self, call: Call) -> Reply:
        parts = call.raw_path.strip("/").split("/")
        if parts[0] in _PASSED_THROUGH:
            return await self._passthrough.forward(call)
        route = self._route(call.method, parts)
        if route is None:
            return JsonReply.error(404, _NOT_SERVED.format(method=call.method, path=f"/v1{call.raw_path}"), "not_found")
        if call.body is not None and not isinstance(call.body, bytes):  # a pass-through body, streaming in
            call = dataclasses.replace(call, body=b"".join([chunk async for chunk in call.body]))  # (bounded by its stream)
        return await route(call, parts)

    def _route(self, method: str, parts: list[str]) -> Route | None:
        match method, parts:
            case "POST", ["threads", "runs"]:
                return self._create_thread_and_run
            case "POST", ["threads"]:
                return self._create_thread
            case "GET" | "POST" | "DELETE", ["threads", _]:
                return self._thread
            case "POST", ["threads", _, "messages"]:
                return self._create_message
            case "GET", ["threads", _, "messages"]:
                return self._list_messages
            case "GET", ["threads", _, "messages", _]:
                return self._retrieve_message
            case "POST", ["threads", _, "runs"]:
                return self._create_run
            case "GET", ["threads", _, "runs"]:
                return self._list_runs
            case "GET", ["threads", _, "runs", _]:
                return self._retrieve_run
            case "POST", ["threads", _, "runs", _]:
                return self._update_run
            case "POST", ["threads", _, "runs", _, "submit_tool_outputs"]:
                return self._submit_tool_outputs
            case "GET", ["threads", _, "runs", _, "steps"] | ["threads", _, "runs", _, "steps", _]:
                return self._steps
            case "POST", ["threads", _, "runs", _, "cancel"]:
                return self._cancel
            case "GET" | "POST", ["assistants"]:
                return self._assistant_call
            case "GET" | "POST" | "DELETE", ["assistants", _]:
                return self._assistant_call
        return None

    async def fetch(
        self,
        session: aiohttp.ClientSession,
        api_path: str,
        authorization: str | None,
        *,
        request_id: str | None = None,
        client_headers: CIMultiDictProxy[str] | None = None,
        state: StateStore | None = None,
        tenant: str | None = None,
    ) -> tuple[int, bytes, str]:
        """A GET through the facade itself: an assistant's definition, a run as it now stands."""
        if state is None or tenant is None:
            return 404, error_body(f"No object found at {api_path}.", "invalid_request_error"), "application/json"
        headers = CIMultiDict({"X-Request-ID": request_id} if request_id else {})
        if authorization:
            headers["Authorization"] = authorization
        reply = await self.forward(Call(session, "GET", api_path, "", headers, None, tenant, state))
        body = b"".join([chunk async for chunk in reply.content.iter_any()])
        reply.release()
        return reply.status, body, reply.content_type

    # --- routes ----------------------------------------------------------------------------------

    async def _assistant_call(self, call: Call, parts: list[str]) -> Reply:
        return await self.assistants.serve(call, parts, dict(parse_qsl(call.query)))

    async def _create_thread(self, call: Call, parts: list[str]) -> Reply:
        reply, _ = await threads.create_thread(self.client, call, _body(call))
        return reply

    async def _thread(self, call: Call, parts: list[str]) -> Reply:
        return await threads.thread_call(self.client, call, parts[1])

    async def _create_message(self, call: Call, parts: list[str]) -> Reply:
        return await threads.create_message(self.client, call, parts[1])

    async def _list_messages(self, call: Call, parts: list[str]) -> Reply:
        return await threads.list_messages(self.client, call, parts[1], dict(parse_qsl(call.query)))

    async def _retrieve_message(self, call: Call, parts: list[str]) -> Reply:
        return await threads.retrieve_message(self.client, call, parts[1], parts[3])

    async def _create_thread_and_run(self, call: Call, parts: list[str]) -> Reply:
        body = _body(call)
        assistant = await self._assistant_of(call, body)
        if isinstance(assistant, JsonReply):
            return assistant
        reply, thread = await threads.create_thread(self.client, call, {**dict(body.get("thread") or {}), "messages": []})
        if thread is None:
            return reply
        spec = runs.new_spec(thread["id"], str(body["assistant_id"]), assistant, body)
        return await self._start(call, spec, body, thread)

    async def _create_run(self, call: Call, parts: list[str]) -> Reply:
        body = _body(call)
        assistant = await self._assistant_of(call, body)
        if isinstance(assistant, JsonReply):
            return assistant
        spec = runs.new_spec(parts[1], str(body["assistant_id"]), assistant, body)
        return await self._start(call, spec, body, None)

    async def _assistant_of(self, call: Call, body: dict[str, Any]) -> dict[str, Any] | JsonReply:
        """The definition of the run's assistant, if the caller may use it."""
        found = await self.assistants.find(call.state, call.tenant, str(body.get("assistant_id")))
        return found[0].model_dump() if found is not None else not_found(str(body.get("assistant_id")))

    async def _start(self, call: Call, spec: RunSpec, body: dict[str, Any], thread: dict[str, Any] | None) -> Reply:
        """The run's response, with the thread's tool resources (its messages' attachments among them) joined."""
        await threads.attach(self.client, call, spec.thread_id, thread_messages(body))
        spec.tool_resources = merge_tool_resources(spec.tool_resources, await threads.thread_tool_resources(call, spec.thread_id))
        return await runs.start_run(self.client, call, spec, self._model_map.get(spec.model, spec.model), body, thread)

    async def _list_runs(self, call: Call, parts: list[str]) -> Reply:
        return await runs.list_runs(call, parts[1], dict(parse_qsl(call.query)))

    async def _retrieve_run(self, call: Call, parts: list[str]) -> Reply:
        return await runs.retrieve_run(self.client, call, parts[1], parts[3])

    async def _update_run(self, call: Call, parts: list[str]) -> Reply:
        return await runs.update_run(call, parts[1], parts[3])

    async def _submit_tool_outputs(self, call: Call, parts: list[str]) -> Reply:
        return await runs.submit_tool_outputs(self.client, call, parts[1], parts[3], self._model_map)

    async def _steps(self, call: Call, parts: list[str]) -> Reply:
        step_id = parts[5] if len(parts) == 6 else None
        return await runs.list_steps(call, parts[1], parts[3], dict(parse_qsl(call.query)), step_id)

    async def _cancel(self, call: Call, parts: list[str]) -> Reply:
        return await runs.cancel_run(self.client, call, parts[1], parts[3])


def _body(call: Call) -> dict[str, Any]:
    return dict(json_object(call.body if isinstance(call.body, bytes) else b""))
