"""The facade's request translation: an Assistants run (the assistant plus the run's overrides) → the
Responses request sent upstream."""

from __future__ import annotations

from gateway.upstreams.responses.requests import (
    answer_items,
    history_input,
    input_messages,
    last_messages,
    response_request,
    run_spec,
    thread_messages,
)

ASSISTANT = {
    "model": "gpt-4o",
    "instructions": "You help with orders.",
    "tools": [
        {"type": "function", "function": {"name": "get_order", "description": "Look an order up",
                                          "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}},
        {"type": "file_search", "file_search": {"max_num_results": 5}},
        {"type": "code_interpreter"},
    ],
    "tool_resources": {"file_search": {"vector_store_ids": ["vs_assistant"]}, "code_interpreter": {"file_ids": ["file-a"]}},
    "temperature": 0.3,
    "response_format": "auto",
}  # fmt: skip


def test_the_assistant_definition_goes_inline_with_the_runs_overrides() -> None:
    body = {
        "assistant_id": "asst_support",
        "thread": {"messages": [{"role": "user", "content": "Where is order 7?"}],
                   "tool_resources": {"file_search": {"vector_store_ids": ["vs_thread"]}}},
        "additional_instructions": "Answer in French.",
        "max_completion_tokens": 300,
        "top_p": 0.9,
        "tool_choice": {"type": "function", "function": {"name": "get_order"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": {"type": "object"}, "strict": True}},
        "metadata": {"ticket": "42"},
        "stream": True,
    }  # fmt: skip
    spec = run_spec("run_1", "conv_1", "asst_support", ASSISTANT, body, 1_700_000_000)
    assert (spec.model, spec.temperature, spec.top_p) == ("gpt-4o", 0.3, 0.9)
    assert spec.instructions == "You help with orders.\n\nAnswer in French."
    request = response_request(spec, "conv_1", "gpt-4.1", input_messages(thread_messages(body)))
    assert request == {
        "model": "gpt-4.1",
        "conversation": "conv_1",
        "input": [{"role": "user", "content": "Where is order 7?"}],
        "instructions": "You help with orders.\n\nAnswer in French.",
        "tools": [
            {"type": "function", "name": "get_order", "description": "Look an order up",
             "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}},
            {"type": "file_search", "vector_store_ids": ["vs_assistant", "vs_thread"], "max_num_results": 5},
            {"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-a"]}},
        ],
        "parallel_tool_calls": True,
        "tool_choice": {"type": "function", "name": "get_order"},
        "temperature": 0.3,
        "top_p": 0.9,
        "max_output_tokens": 300,
        "text": {"format": {"type": "json_schema", "name": "order", "schema": {"type": "object"}, "strict": True}},
        "truncation": "auto",
        "metadata": {"ticket": "42"},
    }  # fmt: skip


def test_message_parts_become_input_parts() -> None:
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            {"type": "image_file", "image_file": {"file_id": "file-img"}},
        ]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
    ]  # fmt: skip
    assert input_messages(messages) == [
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is in this picture?"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
            {"type": "input_image", "file_id": "file-img", "detail": "auto"},
        ]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
    ]  # fmt: skip


def test_a_plain_run_sends_only_what_it_has() -> None:
    spec = run_spec("run_1", "conv_1", "asst_plain", {"model": "gpt-4o"}, {"assistant_id": "asst_plain"}, 0)
    request = response_request(spec, "conv_1", "gpt-4o", [])
    assert request == {"model": "gpt-4o", "conversation": "conv_1", "input": [], "truncation": "auto"}


def test_a_run_given_the_last_messages_gets_them_oldest_first_and_its_answer_goes_back_as_items() -> None:
    body = {"assistant_id": "asst_plain", "truncation_strategy": {"type": "last_messages", "last_messages": 2}}
    spec = run_spec("run_1", "conv_1", "asst_plain", {"model": "gpt-4o"}, body, 0)
    assert last_messages(spec) == 2 and last_messages(run_spec("run_2", "conv_1", "asst_plain", {"model": "gpt-4o"}, {}, 0)) is None
    newest_first = [
        {"id": "msg_3", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "c", "annotations": []}]},
        {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"id": "msg_2", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "b"}]},
        {"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]},
    ]  # fmt: skip
    assert history_input(newest_first, 2) == [
        {"role": "user", "content": [{"type": "input_text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "c"}]},
    ]
    request = response_request(spec, None, "gpt-4o", [], previous_response_id="resp_1")
    assert "conversation" not in request and request["previous_response_id"] == "resp_1" and "truncation" not in request
    assert answer_items(newest_first[:2]) == [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "c"}]}]
