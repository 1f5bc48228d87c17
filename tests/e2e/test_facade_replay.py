"""Every recorded Responses answer (real api.openai.com traffic, packaged with the simulator) replayed
through the facade, exactly as recorded (`X-Simulator-Replay`): the Assistants run the official SDK
receives carries the recording's text, tool calls and usage, and its steps show the tools it ran."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.simulator.responses_recordings import Exchange, load_exchanges

FACADE = {"upstream": {"protocol": "responses"}, "assistants": {"asst_replay": {"model": "gpt-4o"}}}
THREAD = {"messages": [{"role": "user", "content": "Go on."}]}
CASES = [(stem, index) for stem, exchanges in sorted(load_exchanges().items()) for index in range(len(exchanges))]
STEP_TOOLS = {"function_call": "function", "file_search_call": "file_search", "code_interpreter_call": "code_interpreter"}


def recorded(exchange: Exchange) -> dict[str, Any]:
    """What the recording says the run holds: its last state (a background response's last poll)."""
    final = exchange.polls[-1] if exchange.polls else exchange.final()
    output = final.get("output") or []
    return {
        "text": "".join(part["text"] for item in output if item["type"] == "message"
                        for part in item["content"] if part.get("type") == "output_text"),  # fmt: skip
        "calls": [(item["name"], item["arguments"]) for item in output if item["type"] == "function_call"],
        "tools": [STEP_TOOLS[item["type"]] for item in output if item["type"] in STEP_TOOLS],
        "code": [item["code"] for item in output if item["type"] == "code_interpreter_call"],
        "usage": (final["usage"]["input_tokens"], final["usage"]["output_tokens"], final["usage"]["total_tokens"]),
    }


async def streamed(client: openai.AsyncOpenAI, replay: dict[str, str]) -> tuple[str, Any]:
    text: list[str] = []
    async with client.beta.threads.create_and_run_stream(
        assistant_id="asst_replay", thread=THREAD, extra_headers=replay
    ) as stream:
        async for event in stream:
            if event.event == "thread.message.delta":
                text += [part.text.value for part in event.data.delta.content or () if part.type == "text"]
        return "".join(text), await stream.get_final_run()


@pytest.mark.parametrize(("stem", "index"), CASES, ids=[f"{stem}#{index}" for stem, index in CASES])
async def test_a_recorded_answer_reaches_the_sdk_as_an_assistants_run(make_gateway, stem: str, index: int) -> None:
    exchange = load_exchanges()[stem][index]
    client = (await make_gateway(**FACADE)).async_client()
    replay = {"X-Simulator-Replay": f"{stem}#{index}"}
    if exchange.status != 200:  # a recorded refusal is the SDK's error, in the upstream's words
        with pytest.raises(openai.APIStatusError) as caught:
            await streamed(client, replay)
        assert (caught.value.status_code, caught.value.body["message"]) == (exchange.status, exchange.body["error"]["message"])
        return
    want = recorded(exchange)
    if exchange.polls:  # recorded in background mode and polled: the SDK polls the run the same way
        run = await client.beta.threads.create_and_run_poll(
            assistant_id="asst_replay", thread=THREAD, poll_interval_ms=1, extra_headers=replay
        )
    else:
        text, run = await streamed(client, replay)
        assert text == want["text"]
    if want["calls"]:
        assert run.status == "requires_action"
        wanted = run.required_action.submit_tool_outputs.tool_calls
        assert [(call.function.name, call.function.arguments) for call in wanted] == want["calls"]
    else:
        assert run.status == "completed"
        assert (run.usage.prompt_tokens, run.usage.completion_tokens, run.usage.total_tokens) == want["usage"]
    steps = (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data
    calls = [call for step in steps if step.type == "tool_calls" for call in step.step_details.tool_calls]
    assert [call.type for call in calls] == want["tools"]
    assert [call.code_interpreter.input for call in calls if call.type == "code_interpreter"] == want["code"]
    messages = (await client.beta.threads.messages.list(run.thread_id, order="asc")).data
    said = ["".join(part.text.value for part in m.content if part.type == "text") for m in messages if m.role == "assistant"]
    assert said == ([want["text"]] if want["text"] else [])
    assert all(m.run_id == run.id for m in messages if m.role == "assistant")
