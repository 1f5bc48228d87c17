"""The facade's runs: each run call is one response (a tool round, one more) in the thread's conversation.

The run is kept in the state store (`run:<id>`: its spec, the run object as last shown, the usage so
far) when it starts and when a response ends or pauses it, so it can be read and continued by any
replica. The messages a run wrote are kept too (`message_run:<id>` → the run id), since
conversation items do not know their run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import structlog

from gateway.domain import json_object
from gateway.http.sse import SSEParser
from gateway.http.upstream import Reply
from gateway.ids import token
from gateway.state import StateStore, StateUnavailable
from gateway.upstreams import Call
from gateway.upstreams.responses import objects
from gateway.upstreams.responses.client import ResponsesClient
from gateway.upstreams.responses.events import RunEvents
from gateway.upstreams.responses.objects import RunSpec
from gateway.upstreams.responses.replies import JsonReply, StreamReply, once, paged
from gateway.upstreams.responses.requests import (
    answer_items,
    count_request,
    history_input,
    input_messages,
    last_messages,
    response_request,
    run_spec,
    thread_messages,
)

log = structlog.get_logger("gateway.facade")
RUN_TTL_S = 7 * 24 * 3600.0  # a run can be read (and continued) this long after its last event


async def start_run(
    client: ResponsesClient, call: Call, spec: RunSpec, upstream_model: str, body: Mapping[str, Any],
    thread: objects.JsonObject | None,
) -> Reply:  # fmt: skip
    """The run's first response; `thread` is announced first when the call created it."""
    items, count = input_messages(thread_messages(body)), last_messages(spec)
    if count is None:
        request = response_request(spec, spec.thread_id, upstream_model, items)
    else:
        request = await _from_last_messages(client, call, spec, upstream_model, items, count)
    return await _respond(client, call, RunEvents(spec, new_thread=thread), request, body.get("stream") is True)


def new_spec(thread_id: str, assistant_id: str, assistant: Mapping[str, Any], body: Mapping[str, Any]) -> RunSpec:
    return run_spec(f"run_{token()}", thread_id, assistant_id, assistant, body, int(time.time()))


async def retrieve_run(client: ResponsesClient, call: Call, thread_id: str, run_id: str) -> Reply:
    """The run as it stands; one still going is read on from its response (queued → in_progress → its end)."""
    kept = await kept_run(call.state, thread_id, run_id)
    if kept is None:
        return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
    run, response_id = kept["run"], kept.get("response_id")
    if run["status"] in ("queued", "in_progress") and isinstance(response_id, str):
        status, response = await client.json(call, "GET", f"/responses/{response_id}")
        if status != 200:
            return JsonReply(status, response)
        run = (await _read_on(client, call, kept, response)).last_run
    return JsonReply(200, run)


async def submit_tool_outputs(
    client: ResponsesClient, call: Call, thread_id: str, run_id: str, model_map: Mapping[str, str]
) -> Reply:
    """The outputs go up as `function_call_output` items of a new response in the same conversation:
    the same run goes on, its tool-call steps completed with their outputs."""
    kept = await kept_run(call.state, thread_id, run_id)
    if kept is None:
        return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
    status = kept["run"]["status"]
    if status != "requires_action":
        return JsonReply.error(400, f'Runs in status "{status}" do not accept tool outputs.', None)
    body = json_object(call.body if isinstance(call.body, bytes) else b"")
    given = {o.get("tool_call_id"): str(o.get("output", "")) for o in body.get("tool_outputs") or () if isinstance(o, Mapping)}
    events = _resumed(kept)
    events.announced = objects.give_outputs(events.steps, given, int(time.time()))
    spec = events.spec
    outputs = [{"type": "function_call_output", "call_id": call_id, "output": output} for call_id, output in given.items()]
    model = model_map.get(spec.model, spec.model)
    if last_messages(spec) is None:
        request = response_request(spec, thread_id, model, outputs)
    else:  # the response that asked for the outputs holds the calls: the next one continues it
        request = response_request(spec, None, model, outputs, previous_response_id=kept.get("response_id"))
    return await _respond(client, call, events, request, body.get("stream") is True)


async def update_run(call: Call, thread_id: str, run_id: str) -> Reply:
    """A run's metadata changed (the only field the Assistants API lets a client change)."""
    kept = await kept_run(call.state, thread_id, run_id)
    if kept is None:
        return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
    metadata = json_object(call.body if isinstance(call.body, bytes) else b"").get("metadata")
    if not isinstance(metadata, Mapping):
        return JsonReply.error(400, "metadata must be an object of strings.", "invalid_type", param="metadata")
    events = _resumed(kept)
    events.spec.metadata = dict(metadata)
    events.last_run = {**kept["run"], "metadata": dict(metadata)}
    await _keep(call.state, events)
    return JsonReply(200, events.last_run)


async def cancel_run(client: ResponsesClient, call: Call, thread_id: str, run_id: str) -> Reply:
    """The run's response is cancelled upstream (every response is a background one, streamed or not)."""
    kept = await kept_run(call.state, thread_id, run_id)
    if kept is None:
        return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
    run, response_id = kept["run"], kept.get("response_id")
    if run["status"] not in ("queued", "in_progress") or not isinstance(response_id, str):
        return JsonReply.error(400, f"Cannot cancel run with status '{run['status']}'.", None)
    status, response = await client.json(call, "POST", f"/responses/{response_id}/cancel")
    if status != 200:
        return JsonReply(status, response)
    return JsonReply(200, (await _read_on(client, call, kept, response)).last_run or run)


async def list_steps(call: Call, thread_id: str, run_id: str, query: Mapping[str, str], step_id: str | None) -> Reply:
    """A run's steps, from the output items of its responses: a list page, or one step."""
    kept = await kept_run(call.state, thread_id, run_id)
    if kept is None:
        return JsonReply.error(404, f"No run found with id '{run_id}'.", None)
    steps = [step for step in kept.get("steps") or () if isinstance(step, Mapping)]
    if step_id is not None:
        found = next((step for step in steps if step.get("id") == step_id), None)
        return JsonReply(200, found) if found else JsonReply.error(404, f"No step found with id '{step_id}'.", None)
    return paged(steps, query)


async def list_runs(call: Call, thread_id: str, query: Mapping[str, str]) -> Reply:
    """The thread's runs, oldest first underneath, as the list contract pages them."""
    found = []
    for run_id in await call.state.list_members("thread_runs", thread_id):
        run = await kept_run(call.state, thread_id, run_id)
        if run is not None:
            found.append(run["run"])
    return paged(found, query)


async def kept_run(state: StateStore, thread_id: str, run_id: str) -> dict[str, Any] | None:
    raw = await state.get_record("run", run_id)
    kept = json_object(raw) if raw is not None else {}
    spec = kept.get("spec")
    if not isinstance(spec, Mapping) or spec.get("thread_id") != thread_id or not isinstance(kept.get("run"), Mapping):
        return None
    return dict(kept)


async def _respond(client: ResponsesClient, call: Call, events: RunEvents, request: objects.JsonObject, stream: bool) -> Reply:
    """One response of the run, made in background mode whether streamed or not: so it can be
    cancelled, polled, and read to its end (and counted) if its client leaves."""
    if await _over_prompt_limit(client, call, events.spec, request):
        return await _cut_short(client, call, events, request, stream)
    request = {**request, "background": True, "stream": stream}
    if stream:
        response = await client.open(call, "POST", "/responses", request)
        if response.status != 200:
            return response
        return StreamReply(_translated(client, call, response, events))
    status, answer = await client.json(call, "POST", "/responses", request)
    if status != 200 or not isinstance(answer.get("id"), str):
        return JsonReply(status if status >= 400 else 502, answer)
    events.follow(answer)
    await _keep(call.state, events)
    return JsonReply(200, events.last_run or {})


async def _over_prompt_limit(client: ResponsesClient, call: Call, spec: RunSpec, request: objects.JsonObject) -> bool:
    """Whether the prompt (the conversation so far and this input) is over the run's `max_prompt_tokens`,
    counted by the upstream. A count that fails lets the run go: the token reservation still bounds it."""
    if spec.max_prompt_tokens is None:
        return False
    status, counted = await client.json(call, "POST", "/responses/input_tokens", count_request(request))
    tokens = counted.get("input_tokens")
    if status != 200 or type(tokens) is not int:
        log.warning("input_tokens_uncounted", run_id=spec.run_id, upstream_status=status)
        return False
    return tokens > spec.max_prompt_tokens


async def _cut_short(client: ResponsesClient, call: Call, events: RunEvents, request: objects.JsonObject, stream: bool) -> Reply:
    """The run ends `incomplete` (reason max_prompt_tokens) as the Assistants API ended it; what it was
    given still joins the thread, as it did there."""
    if request["input"] and "conversation" in request:  # (a last_messages run added its input already)
        await client.json(call, "POST", f"/conversations/{request['conversation']}/items", {"items": request["input"]})
    head = events.start() if stream else b""
    tail = events.cut_short("max_prompt_tokens")
    await _keep(call.state, events)
    return StreamReply(once(head + tail)) if stream else JsonReply(200, events.last_run or {})


async def _from_last_messages(
    client: ResponsesClient, call: Call, spec: RunSpec, upstream_model: str, items: list[objects.JsonObject], count: int
) -> objects.JsonObject:
    """`truncation_strategy: last_messages`: the response is given the thread's latest `count` messages
    rather than the whole conversation, so it does not continue it; the new messages join the thread
    first, its answer after (`_answer_into_thread`)."""
    if items:
        await client.json(call, "POST", f"/conversations/{spec.thread_id}/items", {"items": items})
    query = urlencode({"order": "desc", "limit": 100})
    status, page = await client.json(call, "GET", f"/conversations/{spec.thread_id}/items", query=query)
    recent = history_input(page.get("data") or [] if status == 200 else [], count)
    return response_request(spec, None, upstream_model, recent)


async def _answer_into_thread(client: ResponsesClient, call: Call, events: RunEvents) -> None:
    """A last_messages run's response did not continue the conversation: once it ends, its answer is
    added to the thread (the items get their own ids: those are the messages the thread lists)."""
    if last_messages(events.spec) is None or events.status is None or not events.output:
        return
    items = answer_items(events.output)
    events.output.clear()
    if items:
        status, added = await client.json(call, "POST", f"/conversations/{events.spec.thread_id}/items", {"items": items})
        events.message_ids += [item["id"] for item in added.get("data") or () if status == 200 and isinstance(item.get("id"), str)]


async def _read_on(client: ResponsesClient, call: Call, kept: Mapping[str, Any], response: Mapping[str, Any]) -> RunEvents:
    """A kept run, as its response (read whole: polled, or just cancelled) now shows it; kept again."""
    events = _resumed(kept)
    events.follow(response)
    await _answer_into_thread(client, call, events)
    await _keep(call.state, events)
    return events


def _resumed(kept: Mapping[str, Any]) -> RunEvents:
    """A kept run picked up again: its spec, its steps and the usage of its responses so far."""
    return RunEvents(RunSpec(**kept["spec"]), prior_usage=kept.get("usage"), continuing=True,
                     started_at=kept["run"].get("started_at"), response_id=kept.get("response_id"),
                     steps={step["id"]: step for step in kept.get("steps") or ()})  # fmt: skip


async def _keep(state: StateStore, events: RunEvents) -> None:
    """The run as it stands, and which run wrote which message; a failing state only costs reading it later."""
    run_id = events.spec.run_id
    record = {"spec": dataclasses.asdict(events.spec), "run": events.last_run,
              "usage": events.usage if events.usage is not None else events.prior_usage,
              "response_id": events.response_id, "steps": list(events.steps.values())}  # fmt: skip
    try:
        if not events.continuing and not events.kept:  # the run has just begun: the thread lists it
            await state.add_to_list("thread_runs", events.spec.thread_id, run_id, RUN_TTL_S)
            events.kept = True
        await state.put_record("run", run_id, orjson.dumps(record), RUN_TTL_S)
        for message_id in events.message_ids:
            await state.put_record("message_run", message_id, run_id.encode(), RUN_TTL_S)
    except StateUnavailable:
        log.warning("state_unavailable", step="keep_run", run_id=run_id)


async def _translated(
    client: ResponsesClient, call: Call, response: aiohttp.ClientResponse, events: RunEvents
) -> AsyncGenerator[bytes]:
    """The run's Assistants events, each written as soon as the upstream event that makes it arrives."""
    parser = SSEParser()
    # The run is named to the client (`start`) only once it is kept with its response: a client that
    # leaves as soon as it knows the run (the gateway is then cancelled) leaves a run that can be read,
    # polled and settled. The wait is the upstream's first event.
    head: bytes | None = events.start()
    try:
        async for chunk in response.content.iter_any():
            known = events.response_id
            out = b"".join(events.feed(event) for event in parser.feed(chunk))
            if known is None and events.response_id is not None:
                await _keep(call.state, events)  # from here on it can be cancelled, and read if the client leaves
            if head is not None:
                if events.response_id is None:
                    head += out
                    continue
                out, head = head + out, None
            if out:
                yield out
        if head is not None:  # the upstream never named its response
            yield head
        if events.status is None and events.response_id is not None:  # stopped short (cancelled?): ask
            status, ended = await client.json(call, "GET", f"/responses/{events.response_id}")
            yield events.ended(ended) if status == 200 else b""
        tail = events.end()
        await _answer_into_thread(client, call, events)
        await _keep(call.state, events)
        yield tail
    finally:
        response.release()
