"""The audit log wired into the gateway: a decision and an outcome per run call, nothing lost, and
`python -m gateway audit verify` catches an edited, a deleted and a reordered line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import openai
import orjson
import pytest

from tests.support import both_protocols, scrape, value

REPO = Path(__file__).resolve().parents[2]
ENV = {"UP": "sk-upstream", "ALICE": "sk-alice", "BOB": "sk-bob"}
MESSAGE = {"messages": [{"role": "user", "content": "Where is my order 1234?"}]}


def audited(path: Path, content: str = "none") -> dict:
    return {
        "env": ENV,
        "upstream": {"api_key": "${UP}"},
        "tenants": {"alice": {"keys": ["${ALICE}"]}, "bob": {"keys": ["${BOB}"], "policy": "strict"}},
        "policies": {"strict": {"models": {"allow": ["gpt-4o"]}}},
        "audit": {"sink": "file", "path": str(path), "content": content},
    }


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "verify", str(path)], cwd=REPO, capture_output=True, text=True
    )


async def mixed_workload(gateway) -> int:
    """Streamed, polled, tool-call, denied, upstream-failed and abandoned runs; returns how many run calls."""
    alice, bob = gateway.async_client(api_key="sk-alice"), gateway.async_client(api_key="sk-bob")
    assistant = await alice.beta.assistants.create(model="gpt-4o")
    bobs = await bob.beta.assistants.create(model="gpt-4o")
    async with alice.beta.threads.create_and_run_stream(assistant_id=assistant.id, thread=MESSAGE) as stream:
        await stream.until_done()
    await alice.beta.threads.create_and_run_poll(assistant_id=assistant.id, thread=MESSAGE, poll_interval_ms=5)
    tools = await alice.beta.assistants.create(
        model="gpt-4o", tools=[{"type": "function", "function": {"name": "get_order"}}]
    )
    paused = await alice.beta.threads.create_and_run_poll(assistant_id=tools.id, poll_interval_ms=5)
    call = paused.required_action.submit_tool_outputs.tool_calls[0]
    await alice.beta.threads.runs.submit_tool_outputs(
        paused.id, thread_id=paused.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "shipped"}]
    )
    with pytest.raises(openai.PermissionDeniedError):
        await bob.beta.threads.create_and_run(assistant_id=bobs.id, model="gpt-4o-mini")
    with pytest.raises(openai.InternalServerError):
        await alice.beta.threads.create_and_run(
            assistant_id=assistant.id, extra_headers={"X-Simulator-Fault": "http-500"}
        )
    stream = await alice.beta.threads.create_and_run(
        assistant_id=assistant.id, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "30"}
    )
    await stream.__anext__()
    await stream.close()  # abandoned mid-stream
    return 7


@both_protocols
@pytest.mark.integration  # `gateway audit verify` as a process
async def test_every_run_call_has_a_decision_and_an_outcome(make_gateway, tmp_path):
    path = tmp_path / "audit.jsonl"
    gateway = await make_gateway(**audited(path))
    calls = await mixed_workload(gateway)
    await gateway.runs.wait(calls)
    await gateway.server.close()  # stop() writes everything accepted
    written = records(path)
    kinds = Counter(r["kind"] for r in written)
    assert kinds == {"decision": calls, "outcome": calls}
    by_request = {}
    for record in written:
        by_request.setdefault(record["request_id"], []).append(record["kind"])
    assert all(kinds == ["decision", "outcome"] for kinds in by_request.values())
    denied = next(r for r in written if r["kind"] == "decision" and r["decision"] == "deny")
    assert (denied["tenant"], denied["violations"]) == ("bob", ["models.allow"])
    streamed = next(r for r in written if r["kind"] == "outcome" and r["streamed"] and r["status"] == "completed")
    assert streamed["usage"]["total_tokens"] > 0 and streamed["first_delta_s"] is not None
    assert any(r["kind"] == "outcome" and r["client_gone"] for r in written)
    assert any(r["kind"] == "outcome" and r["upstream_status"] == 500 for r in written)
    assert all("Where is my order" not in line for line in path.read_text().splitlines())  # content: none
    assert verify(path).returncode == 0


@both_protocols
async def test_hashed_content(make_gateway, tmp_path):
    path = tmp_path / "audit.jsonl"
    gateway = await make_gateway(**audited(path, content="hash"))
    client = gateway.async_client(api_key="sk-alice")
    assistant = await client.beta.assistants.create(model="gpt-4o")
    await client.beta.threads.create_and_run(assistant_id=assistant.id, thread=MESSAGE)
    await gateway.server.close()
    decision = records(path)[0]
    assert decision["content"]["messages"][0]["text"][0].startswith("sha256:")
    assert "Where is my order" not in path.read_text()


@both_protocols
@pytest.mark.integration  # `gateway audit verify` as a process
@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder"])
async def test_audit_verify_catches_tampering(make_gateway, tmp_path, tamper):
    path = tmp_path / "audit.jsonl"
    gateway = await make_gateway(**audited(path))
    await mixed_workload(gateway)
    await gateway.server.close()
    lines = path.read_bytes().splitlines(keepends=True)
    if tamper == "edit":
        lines[3] = lines[3].replace(b'"tenant":"alice"', b'"tenant":"bob"')
    elif tamper == "delete":
        del lines[3]
    else:
        lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    done = verify(path)
    assert done.returncode == 1
    expected = {"edit": "tampered", "delete": "missing", "reorder": "reordered"}[tamper]
    assert f"line 4: {expected}" in done.stdout


@both_protocols
async def test_a_denied_call_records_no_modification(make_gateway, tmp_path):
    """Its token cap would have been clamped, but the body was never forwarded: the call is a deny,
    not a modify, in the audit and in the metrics."""
    path = tmp_path / "audit.jsonl"
    config = audited(path)
    config["policies"]["strict"]["tokens"] = {"max_completion_tokens": {"max": 1000, "action": "clamp"}}
    gateway = await make_gateway(**config)
    bob = gateway.async_client(api_key="sk-bob")
    assistant = await bob.beta.assistants.create(model="gpt-4o")
    with pytest.raises(openai.PermissionDeniedError):
        await bob.beta.threads.create_and_run(assistant_id=assistant.id, model="o3", max_completion_tokens=999_999)
    await gateway.runs.wait(1)
    metrics = await scrape(gateway)
    decisions = {"tenant": "bob", "decision": "modify", "rule": "tokens.max_completion_tokens"}
    assert value(metrics, "gateway_policy_decisions_total", **decisions) == 0
    assert value(metrics, "gateway_policy_decisions_total", tenant="bob", decision="deny", rule="models.allow") == 1
    await gateway.server.close()
    (decision,) = [r for r in records(path) if r["kind"] == "decision"]
    assert (decision["decision"], decision["modified"], decision["violations"]) == ("deny", [], ["models.allow"])
