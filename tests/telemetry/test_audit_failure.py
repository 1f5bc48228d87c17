"""`audit.on_failure`: while the audit sink cannot write (disk full, directory gone), run calls go on
unaudited (`fail_open`, the loss noted in the chain) or are refused with 503 before anything goes
upstream and the gateway reports not ready (`fail_closed`, and nothing is lost)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import pytest

from gateway.telemetry.audit.chain import verify
from tests.support import both_protocols, team_tenant
from tests.telemetry.test_audit import lines

pytestmark = both_protocols


async def readiness(session: aiohttp.ClientSession, url: str, wanted: int) -> str:
    """/readyz's status once its HTTP status is `wanted` (the writer notices the sink in its own time)."""

    async def poll() -> str:
        while True:
            async with session.get(url) as answer:
                if answer.status == wanted:
                    return str((await answer.json())["status"])
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), 10)


@pytest.mark.parametrize("on_failure", ["fail_open", "fail_closed"])
async def test_a_failing_audit_sink(make_gateway, tmp_path: Path, simulator_state, on_failure: str) -> None:
    path = tmp_path / "gone" / "audit.jsonl"  # a directory that is not there: every write fails
    audit = {"sink": "file", "path": str(path), "on_failure": on_failure}
    gateway = await make_gateway(**team_tenant(audit=audit))
    client, ready = gateway.async_client(api_key="sk-team"), str(gateway.server.make_url("/readyz"))
    assistant = await client.beta.assistants.create(model="gpt-4o")
    await client.beta.threads.create_and_run(assistant_id=assistant.id)  # its records are what fails first
    async with aiohttp.ClientSession() as session:
        if on_failure == "fail_open":
            await gateway.runs.wait(1)
            assert (await client.beta.threads.create_and_run(assistant_id=assistant.id)).status == "queued"
            assert await readiness(session, ready, 200) == "ready"
            await gateway.server.close()
            assert not path.exists()  # unaudited: the price of fail_open
            return

        assert await readiness(session, ready, 503) == "audit_unavailable"
        sent = len(simulator_state.requests)
        with pytest.raises(openai.InternalServerError) as refused:
            await client.beta.threads.create_and_run(assistant_id=assistant.id)
        assert refused.value.status_code == 503
        assert refused.value.body == {
            "message": "The audit log cannot be written, so no run call is made (audit.on_failure: fail_closed).",
            "type": "server_error", "param": None, "code": "audit_unavailable",
        }  # fmt: skip
        assert len(simulator_state.requests) == sent  # nothing went upstream

        path.parent.mkdir()  # the disk is back: the records held are written, calls are made again
        assert await readiness(session, ready, 200) == "ready"
        assert (await client.beta.threads.create_and_run(assistant_id=assistant.id)).status == "queued"
    await gateway.server.close()
    records = lines(path)
    assert [r["kind"] for r in records] == ["decision", "outcome"] * 2  # the first call's records were held, not lost
    assert all(r["dropped"] == 0 for r in records) and verify(path).ok
