"""The run observer: the agent invocation a run call makes, under its SERVER span (made in `tracing`).

Per run call, `RunTracing` (an observer of the record stage) opens an `invoke_agent {agent}` CLIENT
span once the policy has let the call on, child of the SERVER span and parent of the upstream
calls, with what a sampler reads set at its start (operation, provider, agent, request model, the
upstream's `server.address`/`server.port`); at the end it carries the rest of the GenAI attributes
(conversation, response, sampling, usage, finish reason) and the stream milestones. The SERVER
span gets the gateway's own (`gateway.tenant`, `gateway.policy.*`, `gateway.run.*`) and child
spans `gateway.policy` (arrival → decision: reading, validation, ownership and policy) and
`gateway.admission` (decision → forward), placed from the record's milestones. The events at the
stream milestones are (`gateway.first_byte`,
`gateway.first_message_delta`, `gateway.run.requires_action`, `gateway.run.<terminal status>`: the
gateway's own names, `gen_ai.*` is the convention's), with the standard
`gen_ai.response.time_to_first_chunk` for a stream.
Prompt and completion text never reach a span unless `telemetry.tracing.capture_content`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextvars import Token
from typing import Any

import orjson
from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

from gateway.domain import RunRecord, SSEEvent, json_object
from gateway.runtime import RuntimeHolder
from gateway.telemetry.metrics import OPERATION, PROVIDER
from gateway.telemetry.tracing import Attributes, Tracing

# A run's last status as the convention's finish reason (`queued` and `in_progress` are none).
FINISH_REASONS = {
    "completed": "stop",
    "requires_action": "tool_call",
    "failed": "error",
    "expired": "error",
    "cancelled": "cancelled",
}
_CONTENT_FILTERED = "content_filter"  # an incomplete run's other reasons are token limits: `length`


class RunTracing:
    """The `invoke_agent` CLIENT span of each run call, and the gateway's attributes on its SERVER span.

    Its hooks are called inside the handler's task: at `run_decided` the current span is the
    request's SERVER span, and the agent span is made current until `run_finished` (so the upstream
    calls in between are its children).
    """

    def __init__(self, tracing: Tracing, runtime: RuntimeHolder) -> None:
        self._tracing = tracing
        self._runtime = runtime
        self._outputs: dict[int, list[str]] = {}  # id(record) → completed message texts, when capturing
        self._agents: dict[int, tuple[Span, Token[Context]]] = {}  # id(record) → its agent span, its context token

    def run_decided(self, record: RunRecord) -> None:
        server = trace.get_current_span()
        if record.decision == "deny" or not server.is_recording():
            return  # no agent is invoked (or the trace is sampled out)
        upstream = self._runtime.current.config.upstream.base_url
        start: Attributes = {
            "gen_ai.operation.name": OPERATION,
            "gen_ai.provider.name": PROVIDER,
            "server.address": upstream.host or "",
            "server.port": upstream.port or 0,
        }
        for key, value in (("gen_ai.agent.id", record.assistant_id), ("gen_ai.request.model", record.requested_model)):
            if value is not None:
                start[key] = value
        name = f"{OPERATION} {record.assistant_id}" if record.assistant_id else OPERATION
        span = self._tracing.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=start)
        self._agents[id(record)] = (span, context.attach(trace.set_span_in_context(span)))

    def _capture_content(self) -> bool:
        return self._runtime.current.config.telemetry.tracing.capture_content  # follows reloads

    def run_event(self, record: RunRecord, event: SSEEvent) -> None:
        if event.event == "thread.message.completed" and self._capture_content():
            text = _message_text(event.data)
            if text:
                self._outputs.setdefault(id(record), []).append(text)

    def run_finished(self, record: RunRecord) -> None:
        outputs = self._outputs.pop(id(record), [])
        agent, token = self._agents.pop(id(record), (None, None))
        if token is not None:
            with contextlib.suppress(ValueError):  # (attached in another context: nothing to undo here)
                context.detach(token)
        server = trace.get_current_span()
        failed = record.broken or record.drained or record.error_type == "error_event"  # though the answer was 200
        if server.is_recording():
            server.set_attributes(gateway_attributes(record))
            if failed:
                server.set_status(StatusCode.ERROR, record.error_type)
            self._decision_spans(server, record)
        if agent is None:
            return  # denied, or sampled out
        agent.set_attributes(run_attributes(record))
        if failed:
            agent.set_status(StatusCode.ERROR, record.error_type)
        self._milestones(agent, record)
        if self._capture_content() and record.body is not None:
            agent.set_attributes(content_attributes(record.body, outputs, finish_reason(record)))
        agent.end()

    def _decision_spans(self, span: Span, record: RunRecord) -> None:
        if not record.started_ns:
            return

        def at(seconds: float) -> int:
            return int(record.started_ns + seconds * 1e9)

        tracer, parent = self._tracing.tracer, trace.set_span_in_context(span)
        if record.decided_s is not None:
            policy: Attributes = {"gateway.policy.decision": record.decision}
            if record.decision != "none" and record.policy:
                policy["gateway.policy.name"] = record.policy
            child = tracer.start_span("gateway.policy", parent, start_time=record.started_ns, attributes=policy)
            child.end(at(record.decided_s))
            if record.forwarded_s is not None:
                child = tracer.start_span("gateway.admission", parent, start_time=at(record.decided_s))
                child.end(at(record.forwarded_s))

    def _milestones(self, span: Span, record: RunRecord) -> None:
        if not record.started_ns:
            return

        def at(seconds: float) -> int:
            return int(record.started_ns + seconds * 1e9)

        milestones = (
            ("gateway.first_byte", record.ttfb_s),
            ("gateway.first_message_delta", record.first_delta_s),
            ("gateway.run.requires_action", record.requires_action_s),
            (f"gateway.run.{record.status}", record.terminal_s),
        )
        for name, seconds in milestones:
            if seconds is not None:
                span.add_event(name, timestamp=at(seconds))


def run_attributes(record: RunRecord) -> Attributes:
    """The agent invocation's GenAI attributes, as the call ended."""
    attributes: Attributes = {"gen_ai.operation.name": OPERATION, "gen_ai.provider.name": PROVIDER}
    optional: dict[str, AttributeValue | None] = {
        "gen_ai.agent.id": record.assistant_id,
        "gen_ai.conversation.id": record.thread_id,
        "gen_ai.request.model": record.requested_model,
        "gen_ai.response.model": record.model,
        "gen_ai.response.id": record.run_id,
        "gen_ai.request.temperature": record.temperature,
        "gen_ai.request.top_p": record.top_p,
        "gen_ai.request.max_tokens": record.max_completion_tokens,
        "gen_ai.response.finish_reasons": (reason,) if (reason := finish_reason(record)) else None,
        "error.type": record.error_type,
    }
    attributes.update((key, value) for key, value in optional.items() if value is not None)
    usage = record.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        if usage.cached_tokens is not None:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
        if usage.reasoning_tokens is not None:
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if record.streamed and record.ttfb_s is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = record.ttfb_s
    if record.body is not None:
        attributes["gen_ai.output.type"] = output_type(record.body)
    return attributes


def gateway_attributes(record: RunRecord) -> Attributes:
    """The gateway's own, on the SERVER span: tenant, policy, how the run call went."""
    attributes: Attributes = {
        "gateway.tenant": record.tenant,
        "gateway.policy.decision": record.decision,
        "gateway.run.streamed": record.streamed,
        "gateway.run.broken": record.broken,
        "gateway.run.client_gone": record.client_gone,
        "gateway.run.drained": record.drained,
    }
    if record.status:
        attributes["gateway.run.status"] = record.status  # the last status the call saw (queued, ...)
    if record.error_type:
        attributes["error.type"] = record.error_type  # more precise than the HTTP status's
    if record.decision != "none" and record.policy:
        attributes["gateway.policy.name"] = record.policy
    for key, values in (
        ("gateway.policy.violations", record.violations),
        ("gateway.policy.shadowed", record.shadowed),
        ("gateway.policy.modified", record.modified),
    ):
        if values:
            attributes[key] = tuple(values)
    return attributes


def finish_reason(record: RunRecord) -> str | None:
    if record.status == "incomplete":
        return _CONTENT_FILTERED if record.incomplete_reason == _CONTENT_FILTERED else "length"
    return FINISH_REASONS.get(record.status or "")


def output_type(body: Mapping[str, Any]) -> str:
    """`json` when the run asks for a JSON response format, else `text`."""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    return "json" if kind in ("json_object", "json_schema") else "text"


# --- content (only with capture_content) ---------------------------------------------------------


def content_attributes(body: Mapping[str, Any], outputs: list[str], finish: str | None = None) -> Attributes:
    """`gen_ai.input.messages`, `gen_ai.system_instructions`, `gen_ai.output.messages` as JSON strings."""
    attributes: Attributes = {}
    messages = _input_messages(body)
    if messages:
        attributes["gen_ai.input.messages"] = orjson.dumps(messages).decode()
    instructions = [
        {"type": "text", "content": body[key]}
        for key in ("instructions", "additional_instructions")
        if isinstance(body.get(key), str)
    ]
    if instructions:
        attributes["gen_ai.system_instructions"] = orjson.dumps(instructions).decode()
    if outputs:
        replies = [
            {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": finish or "stop"}
            for text in outputs
        ]
        attributes["gen_ai.output.messages"] = orjson.dumps(replies).decode()
    return attributes


def _input_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    thread = body.get("thread")
    raw = (thread.get("messages") if isinstance(thread, Mapping) else None) or body.get("additional_messages") or []
    messages = [
        {"role": message.get("role"), "parts": _parts(message.get("content"))}
        for message in raw
        if isinstance(message, Mapping)
    ]
    for output in body.get("tool_outputs") or []:
        if isinstance(output, Mapping):
            part = {"type": "tool_call_response", "id": output.get("tool_call_id"), "response": output.get("output")}
            messages.append({"role": "tool", "parts": [part]})
    return messages


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": part.get("text")})
        elif kind == "image_url" and isinstance(part.get("image_url"), Mapping):
            parts.append({"type": "uri", "modality": "image", "uri": part["image_url"].get("url")})
        elif kind == "image_file" and isinstance(part.get("image_file"), Mapping):
            parts.append({"type": "file", "modality": "image", "file_id": part["image_file"].get("file_id")})
        else:
            parts.append({"type": kind})
    return parts


def _message_text(data: str | bytes) -> str:
    content = json_object(data).get("content")
    parts = [part.get("text") for part in content if isinstance(part, Mapping)] if isinstance(content, list) else []
    return "".join(text["value"] for text in parts if isinstance(text, Mapping) and isinstance(text.get("value"), str))
