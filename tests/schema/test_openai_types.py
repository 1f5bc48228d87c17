"""Request models of the three run calls: what passes, what fails, and where it is reported."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
import yaml  # type: ignore[import-untyped]

from gateway.errors import InvalidRequest
from gateway.schema.parts import (
    CreateMessageRequest,
    CreateThreadRequest,
    FileSearchTool,
    FunctionTool,
    ImageUrlPart,
    JsonSchemaFormat,
    StaticChunking,
    TextPart,
    ToolChoiceFunction,
)
from gateway.schema.requests import (
    CreateRunRequest,
    CreateThreadAndRunRequest,
    RunRoute,
    SubmitToolOutputsRequest,
    validate_run_request,
)
from tests.recordings import PACKAGED

try:  # the SDK's HTTP client library: httpx, or its fork httpx2 in newer SDK builds
    import httpx2 as httpx
except ImportError:
    import httpx  # type: ignore[no-redef,import-not-found]

FIXTURES = PACKAGED  # the simulator's recordings; tests/simulator/test_recordings_drift.py keeps them true to the transcripts
THREAD_AND_RUN, RUN, SUBMIT = RunRoute.CREATE_THREAD_AND_RUN, RunRoute.CREATE_RUN, RunRoute.SUBMIT_TOOL_OUTPUTS
MINIMAL: dict[RunRoute, dict[str, Any]] = {THREAD_AND_RUN: {"assistant_id": "asst_1"}, RUN: {"assistant_id": "asst_1"}, SUBMIT: {"tool_outputs": []}}


def body(route: RunRoute, **fields: Any) -> dict[str, Any]:
    return {**MINIMAL[route], **fields}


def error_for(route: RunRoute, data: object, **kwargs: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate_run_request(route, data, **kwargs)
    return caught.value


def route_of(url: str) -> RunRoute | None:
    path = url.split("?")[0]
    if path.endswith("/v1/threads/runs"):
        return THREAD_AND_RUN
    if path.endswith("/submit_tool_outputs"):
        return SUBMIT
    return RUN if path.endswith("/runs") else None


def recorded_requests() -> list[tuple[str, dict[str, Any]]]:
    """(url, body) of every recorded JSON POST in the fixture transcripts."""
    requests = [
        (entry["RequestUri"], entry["RequestBody"])
        for path in sorted(FIXTURES.glob("*.json"))
        for entry in json.loads(path.read_text())["Entries"]
        if entry["RequestMethod"] == "POST" and isinstance(entry.get("RequestBody"), dict)
    ]
    for path in sorted(FIXTURES.glob("*.yaml")):
        for interaction in yaml.safe_load(path.read_text())["interactions"]:
            request = interaction["request"]
            if request["method"] == "POST" and request["body"]:
                requests.append((request["uri"], json.loads(request["body"])))
    return requests


RECORDED_RUNS = [(route, data) for url, data in recorded_requests() if (route := route_of(url))]


def test_the_fixtures_contain_all_three_routes() -> None:
    assert {route for route, _ in RECORDED_RUNS} == set(RunRoute)


@pytest.mark.parametrize(("route", "data"), RECORDED_RUNS)
def test_recorded_run_bodies_are_valid(route: RunRoute, data: dict[str, Any]) -> None:
    expected = {THREAD_AND_RUN: CreateThreadAndRunRequest, RUN: CreateRunRequest, SUBMIT: SubmitToolOutputsRequest}
    request = validate_run_request(route, data)
    assert type(request) is expected[route]
    assert request.stream is True


@pytest.mark.parametrize(
    ("model", "url_end"), [(CreateThreadRequest, "/v1/threads"), (CreateMessageRequest, "/messages")]
)
def test_recorded_thread_and_message_bodies_fit_the_shared_parts(model: type[Any], url_end: str) -> None:
    bodies = [data for url, data in recorded_requests() if url.endswith(url_end)]
    assert bodies
    for data in bodies:
        model.model_validate(data)


# --- what the official SDK sends -----------------------------------------------------------


def sdk_body(call: Callable[[openai.OpenAI], object]) -> dict[str, Any]:
    """The JSON body the `openai` SDK puts on the wire for `call`."""
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(400, json={"error": {"message": "recorded", "type": "x", "param": None, "code": None}})

    client = openai.OpenAI(
        api_key="sk-test", max_retries=0, http_client=httpx.Client(transport=httpx.MockTransport(answer))
    )
    with pytest.raises(openai.BadRequestError):
        call(client)
    (data,) = sent
    return data


# Any: the SDK wants its TypedDicts, which plain literals assigned to names do not infer as
SDK_THREAD: Any = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture and the attached file?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
                {"type": "image_file", "image_file": {"file_id": "file-img"}},
            ],
            "attachments": [{"file_id": "file-doc", "tools": [{"type": "file_search"}, {"type": "code_interpreter"}]}],
            "metadata": {"source": "test"},
        },
        {"role": "assistant", "content": "Earlier answer."},
    ],
    "tool_resources": {
        "file_search": {
            "vector_stores": [
                {
                    "file_ids": ["file-doc"],
                    "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}},
                    "metadata": {"team": "docs"},
                }
            ]
        }
    },
}
SDK_TOOLS: Any = [
    {"type": "code_interpreter"},
    {"type": "file_search", "file_search": {"max_num_results": 10, "ranking_options": {"ranker": "auto", "score_threshold": 0.5}}},
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "strict": True,
        },
    },
]
SDK_RESPONSE_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {}}, "strict": True},
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sdk_create_and_run_body_is_valid() -> None:
    data = sdk_body(
        lambda client: client.beta.threads.create_and_run(
            assistant_id="asst_1",
            thread=SDK_THREAD,
            tools=SDK_TOOLS,
            tool_resources={"code_interpreter": {"file_ids": ["file-csv"]}, "file_search": {"vector_store_ids": ["vs_1"]}},
            response_format=SDK_RESPONSE_FORMAT,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            truncation_strategy={"type": "last_messages", "last_messages": 4},
            metadata={"user": "42"},
            model="gpt-4o",
            temperature=0.2,
            top_p=0.9,
            max_prompt_tokens=2000,
            max_completion_tokens=500,
            parallel_tool_calls=False,
            stream=True,
        )
    )
    assert data["thread"] == SDK_THREAD  # the SDK sent our body as is

    request = validate_run_request(THREAD_AND_RUN, data)

    assert isinstance(request, CreateThreadAndRunRequest)
    assert request.thread is not None and request.thread.messages is not None
    parts = request.thread.messages[0].content
    assert isinstance(parts, list) and isinstance(parts[0], TextPart) and isinstance(parts[1], ImageUrlPart)
    assert parts[1].image_url.detail == "high"
    assert request.thread.tool_resources is not None and request.thread.tool_resources.file_search is not None
    stores = request.thread.tool_resources.file_search.vector_stores
    assert stores is not None and isinstance(stores[0].chunking_strategy, StaticChunking)
    assert [tool.type for tool in request.tools or []] == ["code_interpreter", "file_search", "function"]
    assert isinstance(request.tools and request.tools[2], FunctionTool)
    assert isinstance(request.response_format, JsonSchemaFormat)
    assert request.response_format.json_schema.schema_ == {"type": "object", "properties": {}}
    assert isinstance(request.tool_choice, ToolChoiceFunction)
    assert request.parallel_tool_calls is False


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sdk_create_run_body_is_valid() -> None:
    data = sdk_body(
        lambda client: client.beta.threads.runs.create(
            "thread_1",
            assistant_id="asst_1",
            include=["step_details.tool_calls[*].file_search.results[*].content"],
            additional_instructions="Be brief.",
            additional_messages=[{"role": "user", "content": "And tomorrow?", "attachments": None}],
            instructions="You are a weather bot.",
            tools=[SDK_TOOLS[1]],
            reasoning_effort="low",
            response_format={"type": "json_object"},
            tool_choice="required",
            stream=True,
        )
    )
    request = validate_run_request(RUN, data)
    assert isinstance(request, CreateRunRequest)
    assert request.reasoning_effort == "low" and request.tool_choice == "required"
    assert isinstance(request.tools and request.tools[0], FileSearchTool)
    assert request.additional_messages and request.additional_messages[0].content == "And tomorrow?"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sdk_submit_tool_outputs_body_is_valid() -> None:
    data = sdk_body(
        lambda client: client.beta.threads.runs.submit_tool_outputs(
            "run_1",
            thread_id="thread_1",
            tool_outputs=[{"tool_call_id": "call_1", "output": "sunny"}, {"tool_call_id": "call_2", "output": ""}],
            stream=True,
        )
    )
    request = validate_run_request(SUBMIT, data)
    assert isinstance(request, SubmitToolOutputsRequest)
    assert [(out.tool_call_id, out.output) for out in request.tool_outputs] == [("call_1", "sunny"), ("call_2", "")]


def test_spec_defaults_apply_when_fields_are_left_out() -> None:
    request = validate_run_request(RUN, body(RUN, additional_messages=[{"role": "user", "content": [
        {"type": "image_file", "image_file": {"file_id": "f"}}]}]))
    assert isinstance(request, CreateRunRequest)
    assert (request.temperature, request.top_p, request.parallel_tool_calls) == (1.0, 1.0, True)
    assert request.reasoning_effort == "medium" and request.tool_choice is None and request.stream is None
    part = request.additional_messages and request.additional_messages[0].content[0]
    assert part and not isinstance(part, str) and part.type == "image_file" and part.image_file.detail == "auto"
    resources = validate_run_request(THREAD_AND_RUN, body(THREAD_AND_RUN, tool_resources={"code_interpreter": {}}))
    assert isinstance(resources, CreateThreadAndRunRequest) and resources.tool_resources is not None
    assert resources.tool_resources.code_interpreter is not None
    assert resources.tool_resources.code_interpreter.file_ids == []


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        (RUN, {"model": "my-fine-tuned:model"}),  # any model id, not only the spec's examples
        (RUN, {"response_format": "auto", "tool_choice": "none"}),
        (RUN, {"response_format": {"type": "text"}, "tool_choice": {"type": "code_interpreter"}}),
        (RUN, {"tool_choice": {"type": "file_search", "function": {"name": "x"}}}),  # the spec allows `function` here
        (RUN, {"truncation_strategy": {"type": "auto"}, "temperature": 0, "top_p": 1}),
        (RUN, {"temperature": 2, "max_prompt_tokens": 256, "max_completion_tokens": 256}),
        (RUN, {"metadata": {f"k{i}": "v" * 512 for i in range(16)}}),
        (RUN, {"metadata": {"k" * 64: ""}}),
        (RUN, {"tools": [{"type": "code_interpreter"}] * 20}),
        (RUN, {"tools": [{"type": "function", "function": {"name": "a" * 64}}]}),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"max_num_results": 50}}]}),
        (THREAD_AND_RUN, {"thread": {}}),
        (THREAD_AND_RUN, {"tool_resources": {"code_interpreter": {"file_ids": ["f"] * 20}}}),
        (THREAD_AND_RUN, {"thread": {"tool_resources": {"file_search": {"vector_stores": [{"chunking_strategy": {"type": "auto"}}]}}}}),
        (THREAD_AND_RUN, {"thread": {"tool_resources": {"file_search": {"vector_stores": [
            {"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}}]}}}}),
        (SUBMIT, {"tool_outputs": [{"tool_call_id": "call_1"}, {}], "stream": False}),
    ],
)
def test_valid_bodies_at_the_edges_pass(route: RunRoute, fields: dict[str, Any]) -> None:
    validate_run_request(route, body(route, **fields))


# --- nullability, exactly as the spec marks it -----------------------------------------------

NULLABLE = {
    RUN: ["model", "instructions", "additional_instructions", "additional_messages", "tools", "metadata", "temperature",
          "top_p", "stream", "max_prompt_tokens", "max_completion_tokens", "truncation_strategy", "tool_choice",
          "response_format", "reasoning_effort"],
    THREAD_AND_RUN: ["tool_resources"],
    SUBMIT: ["stream"],
}


@pytest.mark.parametrize(("route", "field"), [(route, field) for route, fields in NULLABLE.items() for field in fields])
def test_nullable_fields_accept_null(route: RunRoute, field: str) -> None:
    request = validate_run_request(route, body(route, **{field: None}))
    assert getattr(request, field) is None


@pytest.mark.parametrize(
    ("route", "data", "param"),
    [
        (RUN, {"assistant_id": None}, "assistant_id"),
        (RUN, body(RUN, parallel_tool_calls=None), "parallel_tool_calls"),
        (THREAD_AND_RUN, body(THREAD_AND_RUN, thread=None), "thread"),
        (THREAD_AND_RUN, body(THREAD_AND_RUN, thread={"messages": None}), "thread.messages"),
        (THREAD_AND_RUN, body(THREAD_AND_RUN, tool_resources={"file_search": None}), "tool_resources.file_search"),
        (RUN, body(RUN, tools=[{"type": "file_search", "file_search": None}]), "tools[0].file_search"),
        (RUN, body(RUN, tools=[{"type": "function", "function": {"name": "f", "description": None}}]),
         "tools[0].function.description"),
        (RUN, body(RUN, additional_messages=[{"role": "user", "content": None}]), "additional_messages[0].content"),
        (SUBMIT, {"tool_outputs": [{"output": None}]}, "tool_outputs[0].output"),
        (SUBMIT, {"tool_outputs": None}, "tool_outputs"),
    ],
)
def test_non_nullable_fields_reject_null(route: RunRoute, data: dict[str, Any], param: str) -> None:
    error = error_for(route, data)
    assert (error.param, error.code) == (param, "invalid_type")
    assert "but got null instead" in error.message


@pytest.mark.parametrize(
    ("route", "fields"),
    [
        (RUN, {"tools": [{"type": "function", "function": {"name": "f", "strict": None}}]}),
        (RUN, {"truncation_strategy": {"type": "last_messages", "last_messages": None}}),
        (RUN, {"additional_messages": [{"role": "user", "content": "x", "attachments": None, "metadata": None}]}),
        (RUN, {"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": None}}}),
        (THREAD_AND_RUN, {"thread": {"tool_resources": None, "metadata": None}}),
    ],
)
def test_nested_nullable_fields_accept_null(route: RunRoute, fields: dict[str, Any]) -> None:
    validate_run_request(route, body(route, **fields))


# --- strictness: no coercion ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fields", "param"),
    [
        (RUN, {"temperature": "1"}, "temperature"),
        (RUN, {"temperature": True}, "temperature"),
        (RUN, {"stream": 1}, "stream"),
        (RUN, {"stream": "true"}, "stream"),
        (RUN, {"parallel_tool_calls": 0}, "parallel_tool_calls"),
        (RUN, {"max_prompt_tokens": "300"}, "max_prompt_tokens"),
        (RUN, {"max_prompt_tokens": 300.0}, "max_prompt_tokens"),
        (RUN, {"max_completion_tokens": True}, "max_completion_tokens"),
        (RUN, {"assistant_id": 1}, "assistant_id"),
        (RUN, {"model": ["gpt-4o"]}, "model"),
        (RUN, {"metadata": {"n": 1}}, "metadata.n"),
        (RUN, {"metadata": ["a"]}, "metadata"),
        (RUN, {"truncation_strategy": {"type": "last_messages", "last_messages": "2"}}, "truncation_strategy.last_messages"),
        (RUN, {"tools": [{"type": "function", "function": {"name": "f", "strict": "true"}}]}, "tools[0].function.strict"),
        (RUN, {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, "tools[0].function.parameters"),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"max_num_results": 5.0}}]}, "tools[0].file_search.max_num_results"),
        (RUN, {"tools": {"type": "code_interpreter"}}, "tools"),
        (RUN, {"additional_messages": [{"role": "user", "content": "x", "attachments": [{"file_id": 7, "tools": []}]}]},
         "additional_messages[0].attachments[0].file_id"),
        (THREAD_AND_RUN, {"tool_resources": {"code_interpreter": {"file_ids": "file-1"}}}, "tool_resources.code_interpreter.file_ids"),
        (THREAD_AND_RUN, {"thread": {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}},
         "thread.messages[0].content[0].text"),
        (SUBMIT, {"tool_outputs": [{"tool_call_id": "c", "output": {"temp": 20}}]}, "tool_outputs[0].output"),
    ],
)
def test_wrong_types_are_not_coerced(route: RunRoute, fields: dict[str, Any], param: str) -> None:
    error = error_for(route, body(route, **fields))
    assert (error.param, error.code) == (param, "invalid_type")


@pytest.mark.parametrize("data", [[], "assistant_id", 42, None, [{"assistant_id": "a"}]])
@pytest.mark.parametrize("route", list(RunRoute))
def test_a_body_that_is_not_an_object_is_refused_cleanly(route: RunRoute, data: object) -> None:
    error = error_for(route, data)
    assert (error.param, error.code, error.status) == (None, "invalid_type", 400)
    assert error.message.startswith("Invalid type for the request body: expected an object")


# --- constraints: each class fails with the right param and code ----------------------------

OVERLAP = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401}}


def thread_store(**helper: Any) -> dict[str, Any]:
    return {"thread": {"tool_resources": {"file_search": {"vector_stores": [helper]}}}}


@pytest.mark.parametrize(
    ("route", "fields", "param", "code"),
    [
        (RUN, {"temperature": 2.01}, "temperature", "decimal_above_max_value"),
        (RUN, {"temperature": -0.1}, "temperature", "decimal_below_min_value"),
        (RUN, {"top_p": 1.5}, "top_p", "decimal_above_max_value"),
        (RUN, {"max_prompt_tokens": 255}, "max_prompt_tokens", "integer_below_min_value"),
        (RUN, {"max_completion_tokens": 0}, "max_completion_tokens", "integer_below_min_value"),
        (RUN, {"truncation_strategy": {"type": "last_messages", "last_messages": 0}}, "truncation_strategy.last_messages",
         "integer_below_min_value"),
        (RUN, {"truncation_strategy": {"type": "first_messages"}}, "truncation_strategy.type", "invalid_value"),
        (RUN, {"truncation_strategy": {"last_messages": 3}}, "truncation_strategy.type", "missing_required_parameter"),
        (RUN, {"reasoning_effort": "extreme"}, "reasoning_effort", "invalid_value"),
        (RUN, {"additional_messages": [{"role": "system", "content": "x"}]}, "additional_messages[0].role", "invalid_value"),
        (RUN, {"additional_messages": [{"role": "user"}]}, "additional_messages[0].content", "missing_required_parameter"),
        (RUN, {"additional_messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u",
         "detail": "max"}}]}]}, "additional_messages[0].content[0].image_url.detail", "invalid_value"),
        (RUN, {"additional_messages": [{"role": "user", "content": [{"type": "image_file", "image_file": {}}]}]},
         "additional_messages[0].content[0].image_file.file_id", "missing_required_parameter"),
        (RUN, {"additional_messages": [{"role": "user", "content": "x", "attachments": [{"file_id": "f", "tools": [
            {"type": "function"}]}]}]}, "additional_messages[0].attachments[0].tools[0].type", "invalid_value"),
        (RUN, {"additional_messages": [{"role": "user", "content": "x", "attachments": [{"file_id": "f"}]}]},
         "additional_messages[0].attachments[0].tools", "missing_required_parameter"),
        (RUN, {"tools": [{"type": "code_interpreter"}] * 21}, "tools", "array_above_max_length"),
        (RUN, {"tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value"),
        (RUN, {"tools": [{"function": {"name": "f"}}]}, "tools[0].type", "missing_required_parameter"),
        (RUN, {"tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter"),
        (RUN, {"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools[0].function.name", "invalid_value"),
        (RUN, {"tools": [{"type": "function", "function": {"name": "a" * 65}}]}, "tools[0].function.name", "invalid_value"),
        (RUN, {"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name", "invalid_value"),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"max_num_results": 51}}]},
         "tools[0].file_search.max_num_results", "integer_above_max_value"),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"max_num_results": 0}}]},
         "tools[0].file_search.max_num_results", "integer_below_min_value"),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"ranking_options": {"score_threshold": 1.5}}}]},
         "tools[0].file_search.ranking_options.score_threshold", "decimal_above_max_value"),
        (RUN, {"tools": [{"type": "file_search", "file_search": {"ranking_options": {"ranker": "best", "score_threshold": 0}}}]},
         "tools[0].file_search.ranking_options.ranker", "invalid_value"),
        (RUN, {"tool_choice": "any"}, "tool_choice", "invalid_value"),
        (RUN, {"tool_choice": {"type": "function"}}, "tool_choice.function", "missing_required_parameter"),
        (RUN, {"tool_choice": {"type": "function", "function": {}}}, "tool_choice.function.name", "missing_required_parameter"),
        (RUN, {"tool_choice": {"type": "web_search"}}, "tool_choice.type", "invalid_value"),
        (RUN, {"response_format": "json"}, "response_format", "invalid_value"),
        (RUN, {"response_format": {"type": "json_schema"}}, "response_format.json_schema", "missing_required_parameter"),
        (RUN, {"response_format": {"type": "json_schema", "json_schema": {"name": "my schema"}}},
         "response_format.json_schema.name", "invalid_value"),
        (RUN, {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
        (RUN, {"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65, "string_above_max_length"),
        (RUN, {"metadata": {"note": "v" * 513}}, "metadata.note", "string_above_max_length"),
        (RUN, {"additional_messages": [{"role": "user", "content": "x", "metadata": {"n": "v" * 513}}]},
         "additional_messages[0].metadata.n", "string_above_max_length"),
        (THREAD_AND_RUN, {"thread": {"metadata": {f"k{i}": "v" for i in range(17)}}}, "thread.metadata", "object_above_max_properties"),
        (THREAD_AND_RUN, {"thread": {"messages": [{"role": "user", "content": []}]}}, "thread.messages[0].content", "empty_array"),
        (THREAD_AND_RUN, {"tool_resources": {"code_interpreter": {"file_ids": ["f"] * 21}}},
         "tool_resources.code_interpreter.file_ids", "array_above_max_length"),
        (THREAD_AND_RUN, {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1", "vs_2"]}}},
         "tool_resources.file_search.vector_store_ids", "array_above_max_length"),
        (THREAD_AND_RUN, {"thread": {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1", "vs_2"]}}}},
         "thread.tool_resources.file_search.vector_store_ids", "array_above_max_length"),
        (THREAD_AND_RUN, {"thread": {"tool_resources": {"file_search": {"vector_stores": [{}, {}]}}}},
         "thread.tool_resources.file_search.vector_stores", "array_above_max_length"),
        (THREAD_AND_RUN, {"thread": {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1"], "vector_stores": [{}]}}}},
         "thread.tool_resources.file_search.vector_stores", "invalid_value"),
        (THREAD_AND_RUN, thread_store(chunking_strategy=OVERLAP),
         "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.chunk_overlap_tokens", "invalid_value"),
        (THREAD_AND_RUN, thread_store(chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 99,
         "chunk_overlap_tokens": 0}}),
         "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.max_chunk_size_tokens",
         "integer_below_min_value"),
        (THREAD_AND_RUN, thread_store(chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 4097,
         "chunk_overlap_tokens": 0}}),
         "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.max_chunk_size_tokens",
         "integer_above_max_value"),
        (THREAD_AND_RUN, thread_store(chunking_strategy={"type": "static"}),
         "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static", "missing_required_parameter"),
        (THREAD_AND_RUN, thread_store(chunking_strategy={"type": "semantic"}),
         "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.type", "invalid_value"),
        (THREAD_AND_RUN, thread_store(metadata={f"k{i}": "v" for i in range(17)}),
         "thread.tool_resources.file_search.vector_stores[0].metadata", "object_above_max_properties"),
        (RUN, {"assistant_id": "a", "thread": {}}, "thread", "unknown_parameter"),
        (RUN, {"tool_resources": {}}, "tool_resources", "unknown_parameter"),
        (THREAD_AND_RUN, {"additional_messages": []}, "additional_messages", "unknown_parameter"),
        (THREAD_AND_RUN, {"reasoning_effort": "low"}, "reasoning_effort", "unknown_parameter"),
        # the vector-store helper exists on the thread's tool_resources only
        (THREAD_AND_RUN, {"tool_resources": {"file_search": {"vector_stores": []}}}, "tool_resources.file_search.vector_stores",
         "unknown_parameter"),
        (SUBMIT, {"tool_outputs": [{"tool_call_id": "c", "output": "o", "error": "x"}]}, "tool_outputs[0].error",
         "unknown_parameter"),
        (SUBMIT, {"run_id": "r"}, "run_id", "unknown_parameter"),
    ],
)
def test_constraint_violations_name_the_param(route: RunRoute, fields: dict[str, Any], param: str, code: str) -> None:
    error = error_for(route, body(route, **fields))
    assert (error.param, error.code) == (param, code)


@pytest.mark.parametrize(
    ("route", "data", "param"),
    [
        (THREAD_AND_RUN, {}, "assistant_id"),
        (RUN, {"stream": True}, "assistant_id"),
        (SUBMIT, {"stream": True}, "tool_outputs"),
    ],
)
def test_required_fields(route: RunRoute, data: dict[str, Any], param: str) -> None:
    error = error_for(route, data)
    assert (error.param, error.code) == (param, "missing_required_parameter")


# --- unknown fields: rejected by default, ignored on request ---------------------------------

FULL_THREAD_AND_RUN: dict[str, Any] = {
    "assistant_id": "asst_1",
    "thread": copy.deepcopy(SDK_THREAD),
    "tools": copy.deepcopy(SDK_TOOLS),
    "tool_resources": {"code_interpreter": {"file_ids": ["f"]}, "file_search": {"vector_store_ids": ["vs"]}},
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": copy.deepcopy(SDK_RESPONSE_FORMAT),
    "truncation_strategy": {"type": "auto"},
}

UNKNOWN_FIELD_SITES = [
    ((), "foo"),
    (("thread",), "thread.foo"),
    (("thread", "messages", 0), "thread.messages[0].foo"),
    (("thread", "messages", 0, "content", 1), "thread.messages[0].content[1].foo"),
    (("thread", "messages", 0, "content", 1, "image_url"), "thread.messages[0].content[1].image_url.foo"),
    (("thread", "messages", 0, "attachments", 0, "tools", 0), "thread.messages[0].attachments[0].tools[0].foo"),
    (("thread", "tool_resources", "file_search", "vector_stores", 0, "chunking_strategy", "static"),
     "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.foo"),
    (("tools", 1, "file_search", "ranking_options"), "tools[1].file_search.ranking_options.foo"),
    (("tools", 2, "function"), "tools[2].function.foo"),
    (("tool_resources", "code_interpreter"), "tool_resources.code_interpreter.foo"),
    (("tool_choice", "function"), "tool_choice.function.foo"),
    (("response_format", "json_schema"), "response_format.json_schema.foo"),
    (("truncation_strategy",), "truncation_strategy.foo"),
]


def with_unknown_field(path: tuple[str | int, ...]) -> dict[str, Any]:
    data = copy.deepcopy(FULL_THREAD_AND_RUN)
    target: Any = data
    for step in path:
        target = target[step]
    target["foo"] = {"anything": [1, "x"]}
    return data


def test_the_full_body_is_valid() -> None:
    validate_run_request(THREAD_AND_RUN, FULL_THREAD_AND_RUN)


@pytest.mark.parametrize(("path", "param"), UNKNOWN_FIELD_SITES)
def test_unknown_fields_are_rejected_by_default(path: tuple[str | int, ...], param: str) -> None:
    error = error_for(THREAD_AND_RUN, with_unknown_field(path))
    assert (error.param, error.code, error.message) == (param, "unknown_parameter", f"Unknown parameter: '{param}'.")


@pytest.mark.parametrize(("path", "param"), UNKNOWN_FIELD_SITES)
def test_unknown_fields_are_ignored_in_pass_mode(path: tuple[str | int, ...], param: str) -> None:
    request = validate_run_request(THREAD_AND_RUN, with_unknown_field(path), unknown_fields="pass")
    assert request == validate_run_request(THREAD_AND_RUN, FULL_THREAD_AND_RUN)


@pytest.mark.parametrize("route", list(RunRoute))
def test_pass_mode_still_validates_known_fields(route: RunRoute) -> None:
    error = error_for(route, {"unknown": 1, "stream": "yes", **MINIMAL[route]}, unknown_fields="pass")
    assert (error.param, error.code) == ("stream", "invalid_type")


def test_pass_mode_does_not_invent_fields() -> None:
    request = validate_run_request(RUN, body(RUN, thread={"messages": []}, foo=1), unknown_fields="pass")
    assert not hasattr(request, "thread") and not hasattr(request, "foo")
    assert request.model_fields_set == {"assistant_id"}


def test_a_new_threads_file_search_names_a_vector_store_source() -> None:
    """The spec's oneOf: vector_store_ids or vector_stores (both together is refused above)."""
    body = {"assistant_id": "asst_1", "thread": {"tool_resources": {"file_search": {}}}}
    with pytest.raises(InvalidRequest) as refused:
        validate_run_request(RunRoute.CREATE_THREAD_AND_RUN, body)
    assert refused.value.param == "thread.tool_resources.file_search"
