"""Strict request models of the three Assistants calls that start or continue a run.

    POST /v1/threads/runs                                   CreateThreadAndRunRequest
    POST /v1/threads/{thread_id}/runs                       CreateRunRequest
    POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs   SubmitToolOutputsRequest

Faithful to the official OpenAPI spec (same names, types, enums, ranges, defaults and
nullability; see `gateway.openai_parts` for the shared pieces). Validation never coerces
("1" is not 1, 1 is not true) and rejects unknown fields unless the caller asks to pass them.
The gateway forwards the original bytes, so a validated model is only read, never re-serialised.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from gateway.schema.errors import invalid_request_from
from gateway.schema.parts import (
    UNKNOWN_FIELDS,
    CreateMessageRequest,
    CreateThreadRequest,
    Metadata,
    Omittable,
    ReasoningEffort,
    RequestModel,
    ResponseFormat,
    ToolChoice,
    ToolResources,
    Tools,
    TruncationObject,
)

__all__ = [
    "CreateRunRequest",
    "CreateThreadAndRunRequest",
    "RunRequest",
    "RunRoute",
    "SubmitToolOutputsRequest",
    "ToolOutput",
    "validate_run_request",
]


class _RunOptions(RequestModel):
    """The fields CreateRunRequest and CreateThreadAndRunRequest have in common."""

    assistant_id: str
    model: str | None = None  # any model id; the spec's enum of known ones is only a hint
    instructions: str | None = None
    tools: Tools | None = None
    metadata: Metadata = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = 1.0
    top_p: Annotated[float, Field(ge=0, le=1)] | None = 1.0
    stream: bool | None = None
    max_prompt_tokens: Annotated[int, Field(ge=256)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=256)] | None = None
    truncation_strategy: TruncationObject | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None


class CreateThreadAndRunRequest(_RunOptions):
    thread: Omittable[CreateThreadRequest] = None
    tool_resources: ToolResources | None = None


class CreateRunRequest(_RunOptions):
    reasoning_effort: ReasoningEffort | None = "medium"
    additional_instructions: str | None = None
    additional_messages: list[CreateMessageRequest] | None = None


class ToolOutput(RequestModel):
    # Neither is marked required in the spec.
    tool_call_id: Omittable[str] = None
    output: Omittable[str] = None


class SubmitToolOutputsRequest(RequestModel):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None


RunRequest = CreateThreadAndRunRequest | CreateRunRequest | SubmitToolOutputsRequest


class RunRoute(enum.Enum):
    CREATE_THREAD_AND_RUN = "create_thread_and_run"
    CREATE_RUN = "create_run"
    SUBMIT_TOOL_OUTPUTS = "submit_tool_outputs"


_BODY_MODELS: dict[RunRoute, type[RunRequest]] = {
    RunRoute.CREATE_THREAD_AND_RUN: CreateThreadAndRunRequest,
    RunRoute.CREATE_RUN: CreateRunRequest,
    RunRoute.SUBMIT_TOOL_OUTPUTS: SubmitToolOutputsRequest,
}


def validate_run_request(
    route: RunRoute, data: object, *, unknown_fields: Literal["reject", "pass"] = "reject"
) -> RunRequest:
    """Validate the parsed JSON body of `route`; any problem raises `gateway.errors.InvalidRequest`.

    With unknown_fields="pass", keys the spec does not define are ignored at every level.
    """
    model = _BODY_MODELS[route]
    try:
        return model.model_validate(data, context={UNKNOWN_FIELDS: unknown_fields})
    except ValidationError as exc:
        raise invalid_request_from(exc, model) from None
