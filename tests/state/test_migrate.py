"""`python -m gateway state migrate`: a Redis written by a build before keys were hash-tagged per tenant
(the layout written out here key by key, as that build's scripts left it) reads the same afterwards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from gateway.cli.main import main
from gateway.domain import TokenLimits, Usage
from gateway.state import TOKENS_PER_DAY
from gateway.state.redis import RedisState
from tests.redis_server import RedisServer
from tests.state.stores import T0
from tests.support import REDIS_TIMEOUT_S

DAY, MONTH, MINUTE = "2026-03-10", "2026-03", "202603101200"


def old_layout(url: str) -> None:
    """team-a owns a thread and two runs; run_1 was settled, run_2 is running with 1000 tokens and
    $0.50 reserved; team-a spent 3000 tokens and $2 today (key fp_a: $1); `gone` is no tenant now."""
    r = redis.Redis.from_url(url, decode_responses=True)
    for kind, object_id in (("t", "thread_1"), ("r", "run_1"), ("r", "run_2")):
        r.set(f"gw:own:{kind}:{object_id}", "team-a", ex=3600)
        r.zadd(f"gw:own:{kind}:idx", {f"gw:own:{kind}:{object_id}": 1})
    r.set("gw:settled:run_1", "1", ex=3600)
    r.set("gw:settled:run_nobodys", "1", ex=3600)
    r.zadd("gw:pending", {"run_2": T0})
    r.hset("gw:run:run_2", mapping={"thread": "thread_1", "tenant": "team-a", "created": T0, "checked": T0,
                                    "key": "fp_a", "resv": "res2"})  # fmt: skip
    r.hset("gw:resv:res2", mapping={"tenant": "team-a", "amount": 1000, "m": f"gw:tpm:team-a:{MINUTE}",
                                    "d": f"gw:tpd:team-a:{DAY}", "mo": f"gw:tpmo:team-a:{MONTH}", "usd": 500_000,
                                    "un": 2, "u1": f"gw:usdd:team-a:{DAY}", "u2": f"gw:usdd:team-a:fp_a:{DAY}",
                                    "run": "run_2"})  # fmt: skip
    for name, value in ((f"tpm:team-a:{MINUTE}", 1000), (f"tpd:team-a:{DAY}", 3000), (f"tpmo:team-a:{MONTH}", 3000),
                        (f"usdd:team-a:{DAY}", 2_000_000), (f"usdd:team-a:fp_a:{DAY}", 1_000_000),
                        (f"tpd:gone:{DAY}", 5)):  # fmt: skip
        r.set(f"gw:{name}", value, ex=86400)
    r.close()


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEAM_A", "sk-a")
    monkeypatch.setenv("UP", "sk-upstream")
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps({
        "upstream": {"api_key": "${UP}"},
        "tenants": {"team-a": {"keys": ["${TEAM_A}"]}},
        "state": {"backend": "redis", "url": redis_server.url},
    }))  # fmt: skip
    return path


def test_what_was_kept_before_reads_the_same_after(
    config: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    old_layout(redis_server.url)
    assert main(["state", "migrate", "--config", str(config)]) == 0
    moved = json.loads(capsys.readouterr().out)
    assert moved == {"claims": 3, "runs": 1, "reservations": 1, "settled": 1, "counters": 5, "left": 2}
    asyncio.run(reads_the_same(redis_server.url))
    assert main(["state", "migrate", "--config", str(config)]) == 0  # again: nothing more to move
    assert json.loads(capsys.readouterr().out) == {
        "claims": 0, "runs": 0, "reservations": 0, "settled": 0, "counters": 0, "left": 2,
    }  # fmt: skip


async def reads_the_same(url: str) -> None:
    store = RedisState(url, timeout_s=REDIS_TIMEOUT_S, max_owned_objects=1000)
    try:
        assert await store.owners(["thread_1", "never-claimed"]) == ["team-a", None]
        limits = TokenLimits(per_day=10_000)
        assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 7000}
        assert await store.usd_spent("team-a", T0) == (2_000_000, 0)
        assert await store.usd_spent("team-a", T0, key="fp_a") == (1_000_000, 0)
        assert [run.run_id for run in await store.due_runs(T0 + 10, 10)] == ["run_2"]
        assert not await store.settle("run_1", "team-a", "gpt-4o", Usage(1, 1, 2), T0)  # settled before: once
        # run_2 settles against its reservation: 1000 tokens and $0.50 held become 300 and $0.10.
        assert await store.settle("run_2", "team-a", "gpt-4o", Usage(100, 200, 300), T0, cost=100_000)
        assert await store.tokens_remaining("team-a", limits, T0) == {TOKENS_PER_DAY: 7700}
        assert await store.usd_spent("team-a", T0, key="fp_a") == (600_000, 0)
        assert await store.due_runs(T0 + 10, 10) == []
    finally:
        await store.close()
