"""The gateway's own guarantees hold whichever protocol the upstream speaks: the same tests, run once
forwarding the Assistants API and once serving it on the Responses API (parametrised, not copied).

Policy refusals, token limits, tenant isolation of threads, exactly-once usage in the ledger, the
run metrics and the two audit records per run call are asserted as a client and an operator see them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from gateway.keys import STATE
from tests.support import TEAM_KEY, TOKEN_CAPS, read_until, scrape, team_tenant, value

MESSAGE = {"messages": [{"role": "user", "content": "Reply exactly: streamed"}]}


@pytest.fixture(params=["assistants", "responses"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def start(make_gateway, protocol: str, tmp_path: Path, **config: Any) -> tuple[Any, openai.AsyncOpenAI, str]:
    """A gateway on the simulator in `protocol` mode, a team client, and an assistant it may run."""
    args = team_tenant(**config)
    args["audit"] = {"sink": "file", "path": str(tmp_path / "audit.jsonl")}
    if protocol == "responses":
        args["upstream"] = {**args["upstream"], "protocol": "responses"}
        args["assistants"] = {"asst_team": {"model": "gpt-4o"}}
    gateway = await make_gateway(**args)
    client = gateway.async_client(api_key=TEAM_KEY)
    assistant_id = "asst_team" if protocol == "responses" else (await client.beta.assistants.create(model="gpt-4o")).id
    return gateway, client, assistant_id


async def streamed_run(client: openai.AsyncOpenAI, assistant_id: str, **fields: Any) -> Any:
    async with client.beta.threads.create_and_run_stream(assistant_id=assistant_id, thread=MESSAGE, **fields) as stream:
        await stream.until_done()
        return await stream.get_final_run()


async def test_a_policy_refusal_is_the_same_403_and_nothing_goes_upstream(make_gateway, protocol, tmp_path, simulator_state) -> None:
    _, client, assistant_id = await start(make_gateway, protocol, tmp_path, policy={"models": {"allow": ["gpt-4o"]}})
    before = len(simulator_state.requests)
    with pytest.raises(openai.PermissionDeniedError, match="models.allow"):
        await streamed_run(client, assistant_id, model="o3")
    assert len(simulator_state.requests) == before


async def test_usage_is_settled_once_counted_and_audited(make_gateway, protocol, tmp_path) -> None:
    gateway, client, assistant_id = await start(make_gateway, protocol, tmp_path, policy=TOKEN_CAPS)
    run = await streamed_run(client, assistant_id)
    assert run.status == "completed" and run.usage is not None
    [record] = await gateway.runs.wait()
    assert record.usage is not None and record.usage.total_tokens == run.usage.total_tokens
    [row] = await read_until(lambda: gateway.app[STATE].usage("team", "2000-01-01"), bool)
    assert (row.runs, row.total_tokens) == (1, run.usage.total_tokens)
    metrics = await scrape(gateway)
    assert value(metrics, "gateway_runs_total", tenant="team", model="gpt-4o", status="completed") == 1
    await gateway.server.close()  # the audit writes in the background; stop() writes everything accepted
    lines = [orjson.loads(line) for line in (tmp_path / "audit.jsonl").read_bytes().splitlines()]
    assert [line["kind"] for line in lines] == ["decision", "outcome"]
    assert (lines[1]["run_id"], lines[1]["status"], lines[1]["usage"]["total_tokens"]) == (run.id, "completed", run.usage.total_tokens)


async def test_a_token_budget_refuses_with_openais_429(make_gateway, protocol, tmp_path) -> None:
    budget = {"tokens_per_day": 2000}  # a run reserves 2000 (the policy's caps); what the first used is gone
    _, client, assistant_id = await start(make_gateway, protocol, tmp_path, policy=TOKEN_CAPS, limits=budget)
    first = await streamed_run(client, assistant_id)
    assert 0 < first.usage.total_tokens < 2000
    with pytest.raises(openai.RateLimitError, match="tokens per day"):
        await streamed_run(client, assistant_id, max_prompt_tokens=1000, max_completion_tokens=1000)


async def test_another_tenants_thread_is_not_there(make_gateway, protocol, tmp_path) -> None:
    config = team_tenant()
    other = {"env": {**config["env"], "OTHER_KEY": "sk-other"},
             "tenants": {**config["tenants"], "other": {"keys": ["${OTHER_KEY}"]}}}  # fmt: skip
    gateway, client, assistant_id = await start(make_gateway, protocol, tmp_path, **other)
    run = await streamed_run(client, assistant_id)
    intruder = gateway.async_client(api_key="sk-other")
    for call in (intruder.beta.threads.messages.list(run.thread_id), intruder.beta.threads.retrieve(run.thread_id),
                 intruder.beta.threads.runs.retrieve(run.id, thread_id=run.thread_id)):  # fmt: skip
        with pytest.raises(openai.NotFoundError):
            await call
    assert [m.role for m in (await client.beta.threads.messages.list(run.thread_id)).data]  # the owner still sees it
