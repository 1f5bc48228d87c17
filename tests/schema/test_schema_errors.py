"""ValidationError -> InvalidRequest: OpenAI's wording, codes and exact body paths."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gateway.errors import InvalidRequest
from gateway.schema.errors import invalid_request_from
from gateway.schema.requests import CreateRunRequest, CreateThreadAndRunRequest, SubmitToolOutputsRequest

Case = tuple[type[BaseModel], object]


def convert(model: type[BaseModel], data: object) -> InvalidRequest:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return invalid_request_from(caught.value, model)


def run(**fields: Any) -> Case:
    return CreateRunRequest, {"assistant_id": "asst_1", **fields}


def thread_and_run(**fields: Any) -> Case:
    return CreateThreadAndRunRequest, {"assistant_id": "asst_1", **fields}


def second_message(content: object) -> Case:
    return thread_and_run(thread={"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": content}]})


def run_error(**fields: Any) -> InvalidRequest:
    return convert(*run(**fields))


def test_the_result_is_a_400_invalid_request_error() -> None:
    error = run_error(temperature="warm")
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.type) == (400, "invalid_request_error")


@pytest.mark.parametrize(
    ("case", "param", "code", "message"),
    [
        (
            thread_and_run(thread={"foo": 1}),
            "thread.foo", "unknown_parameter", "Unknown parameter: 'thread.foo'.",
        ),
        (
            run(temperature="1"),
            "temperature", "invalid_type",
            "Invalid type for 'temperature': expected a number, but got a string instead.",
        ),
        (
            run(temperature=3),
            "temperature", "decimal_above_max_value",
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.",
        ),
        (
            run(top_p=-0.5),
            "top_p", "decimal_below_min_value",
            "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, but got -0.5 instead.",
        ),
        (
            run(max_completion_tokens=100),
            "max_completion_tokens", "integer_below_min_value",
            "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 256, but got 100 instead.",
        ),
        (
            (CreateRunRequest, {"model": "gpt-4o"}),
            "assistant_id", "missing_required_parameter", "Missing required parameter: 'assistant_id'.",
        ),
        (
            run(stream=None, parallel_tool_calls=None),
            "parallel_tool_calls", "invalid_type",
            "Invalid type for 'parallel_tool_calls': expected a boolean, but got null instead.",
        ),
        (
            run(additional_messages=[{"role": "system", "content": "x"}]),
            "additional_messages[0].role", "invalid_value",
            "Invalid value: 'system'. Supported values are: 'user' and 'assistant'.",
        ),
        (
            run(additional_messages=[{"role": 1, "content": "x"}]),
            "additional_messages[0].role", "invalid_type",
            "Invalid type for 'additional_messages[0].role': expected a string, but got an integer instead.",
        ),
        (
            run(tool_choice="sometimes"),
            "tool_choice", "invalid_value",
            "Invalid value: 'sometimes'. Supported values are: 'none', 'auto', and 'required'.",
        ),
        (
            run(tool_choice=["auto"]),
            "tool_choice", "invalid_type",
            "Invalid type for 'tool_choice': expected a string or an object, but got an array instead.",
        ),
        (
            run(response_format={"type": "yaml"}),
            "response_format.type", "invalid_value",
            "Invalid value: 'yaml'. Supported values are: 'text', 'json_object', and 'json_schema'.",
        ),
        (
            run(tools=[{"type": "browser"}]),
            "tools[0].type", "invalid_value",
            "Invalid value: 'browser'. Supported values are: 'code_interpreter', 'file_search', and 'function'.",
        ),
        (
            run(tools=[{"type": ["function"]}]),
            "tools[0].type", "invalid_type",
            "Invalid type for 'tools[0].type': expected a string, but got an array instead.",
        ),
        (
            run(tools=[{}]),
            "tools[0].type", "missing_required_parameter", "Missing required parameter: 'tools[0].type'.",
        ),
        (
            run(tools=["code_interpreter"]),
            "tools[0]", "invalid_type",
            "Invalid type for 'tools[0]': expected an object, but got a string instead.",
        ),
        (
            run(tools=[{"type": "code_interpreter"}] * 21),
            "tools", "array_above_max_length",
            "Invalid 'tools': array too long. Expected an array with maximum length 20, but got an array with length 21 instead.",
        ),
        (
            run(tools=[{"type": "function", "function": {"name": "get weather"}}]),
            "tools[0].function.name", "invalid_value",
            "Invalid 'tools[0].function.name': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]{1,64}$'.",
        ),
        (
            run(metadata={f"k{i}": "v" for i in range(17)}),
            "metadata", "object_above_max_properties",
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            "but got an object with 17 properties instead.",
        ),
        (
            run(metadata={"some_key": "v" * 513}),
            "metadata.some_key", "string_above_max_length",
            "Invalid 'metadata.some_key': string too long. Expected a string with maximum length 512, "
            "but got a string with length 513 instead.",
        ),
        (
            run(metadata={"k" * 65: "v"}),
            "metadata." + "k" * 65, "string_above_max_length",
            f"Invalid 'metadata.{'k' * 65}': key too long. Expected a key with maximum length 64, "
            "but got a key with length 65 instead.",
        ),
        (
            second_message([]),
            "thread.messages[1].content", "empty_array",
            "Invalid 'thread.messages[1].content': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
        ),
        (
            second_message({"type": "text", "text": "hi"}),
            "thread.messages[1].content", "invalid_type",
            "Invalid type for 'thread.messages[1].content': expected a string or an array, but got an object instead.",
        ),
        (
            thread_and_run(thread={"tool_resources": {"file_search": {"vector_stores": [{"chunking_strategy": {
                "type": "static", "static": {"max_chunk_size_tokens": 1000, "chunk_overlap_tokens": 501}}}]}}}),
            "thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.chunk_overlap_tokens",
            "invalid_value",
            "Invalid 'thread.tool_resources.file_search.vector_stores[0].chunking_strategy.static.chunk_overlap_tokens': "
            "must not exceed half of max_chunk_size_tokens (1000), but got 501 instead.",
        ),
        (
            thread_and_run(thread={"tool_resources": {"file_search": {
                "vector_store_ids": ["vs_1"], "vector_stores": [{"file_ids": ["f"]}]}}}),
            "thread.tool_resources.file_search.vector_stores", "invalid_value",
            "Invalid 'thread.tool_resources.file_search.vector_stores': cannot be combined with vector_store_ids; "
            "a thread has at most one vector store.",
        ),
        (
            (SubmitToolOutputsRequest, {"tool_outputs": [{}, {}, {"tool_call_id": "c", "output": 42}]}),
            "tool_outputs[2].output", "invalid_type",
            "Invalid type for 'tool_outputs[2].output': expected a string, but got an integer instead.",
        ),
        (
            (SubmitToolOutputsRequest, ["not", "an", "object"]),
            None, "invalid_type",
            "Invalid type for the request body: expected an object, but got an array instead.",
        ),
    ],
)
def test_messages_codes_and_params(case: Case, param: str | None, code: str, message: str) -> None:
    error = convert(*case)
    assert (error.param, error.code, error.message) == (param, code, message)


# --- union tags never leak into the param ----------------------------------------------------


def test_a_deep_error_in_an_array_of_parts_is_reported_not_the_string_alternative() -> None:
    error = convert(*second_message([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": 5}}]))
    assert error.param == "thread.messages[1].content[1].image_url.url"
    assert error.message == (
        "Invalid type for 'thread.messages[1].content[1].image_url.url': expected a string, but got an integer instead."
    )


def test_a_string_content_problem_is_reported_as_such() -> None:
    error = convert(*second_message(7))
    assert (error.param, error.code) == ("thread.messages[1].content", "invalid_type")
    assert "expected a string or an array, but got an integer" in error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        # an unknown key spelled like the tag of another union member
        ({"additional_messages": [{"role": "user", "content": [{"type": "text", "text": "x", "image_url": {}}]}]},
         "additional_messages[0].content[0].image_url"),
        ({"additional_messages": [{"role": "user", "content": [{"type": "text", "text": "x", "array": 1}]}]},
         "additional_messages[0].content[0].array"),
        # the tag equals the field name right after it: tools[0] <tag function> .function .name
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
        ({"tool_choice": {"type": "function", "function": {"name": 1}}}, "tool_choice.function.name"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}, "object": 1}}, "tool_choice.object"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": []}}},
         "response_format.json_schema.schema"),
        # metadata keys that look like tags or like pydantic's "[key]" marker
        ({"metadata": {"string": "v" * 513}}, "metadata.string"),
        ({"metadata": {"function": 1}}, "metadata.function"),
        ({"metadata": {"[key]": "v" * 513}}, "metadata.[key]"),
    ],
)
def test_params_are_exact_body_paths(fields: dict[str, Any], param: str) -> None:
    assert run_error(**fields).param == param


def test_a_metadata_key_named_like_the_key_marker_is_still_a_value_error() -> None:
    error = run_error(metadata={"[key]": "v" * 513})
    assert "string too long" in error.message and "key too long" not in error.message


# --- several errors ----------------------------------------------------------------------


def test_the_first_error_decides_and_the_rest_are_counted() -> None:
    error = convert(CreateRunRequest, {"temperature": 5, "stream": "no", "tools": 1})
    assert (error.param, error.code) == ("assistant_id", "missing_required_parameter")
    assert error.message == "Missing required parameter: 'assistant_id'. (3 more validation errors in this request.)"


def test_one_extra_error_is_singular() -> None:
    error = run_error(temperature=5, top_p=5)
    assert error.param == "temperature"
    assert error.message.endswith("(1 more validation error in this request.)")
