"""The simulator's Responses + Conversations API, through the official SDK: the upstream the gateway's
Assistants facade talks to."""

from __future__ import annotations

from typing import Any

import openai
import pytest


async def test_a_streamed_response_continues_a_conversation(sdk: openai.AsyncOpenAI, simulator_state: Any) -> None:
    conversation = await sdk.conversations.create(metadata={"team": "a"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"team": "a"}
    stream = await sdk.responses.create(
        model="gpt-4.1", conversation=conversation.id, input=[{"role": "user", "content": "Reply exactly: streamed"}],
        stream=True,
    )  # fmt: skip
    events = [event async for event in stream]
    assert [e.type for e in events][0] == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "streamed"
    done = events[-1].response
    assert done.conversation is not None and done.conversation.id == conversation.id
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (21, 3, 24)
    items = await sdk.conversations.items.list(conversation.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in items.data] == [("message", "user"), ("message", "assistant")]
    assert items.data[1].id == done.output[0].id  # the output item, under its fresh id


async def test_function_calls_and_their_outputs_replay_the_recorded_round(sdk: openai.AsyncOpenAI) -> None:
    tool = {"type": "function", "name": "get_capital", "parameters": {"type": "object", "properties": {}}}
    first = await sdk.responses.create(model="gpt-4o", input="What is the capital of France?", tools=[tool])  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_capital" and call.arguments == '{"country":"France"}'
    second = await sdk.responses.create(
        model="gpt-4o", tools=[tool],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Paris"}],
    )  # fmt: skip
    assert "Paris" in second.output_text and second.id != first.id


async def test_unknown_conversations_and_bad_requests_get_the_envelope(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.create(model="gpt-4o", conversation="conv_nope", input="hi")
    with pytest.raises(openai.BadRequestError):
        await sdk.responses.create(model="gpt-4o", conversation="conv_x", previous_response_id="resp_y", input="hi")
