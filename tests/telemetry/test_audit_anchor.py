"""An anchored audit log (`audit.mac_key` and `audit.checkpoints`): `audit verify` catches records cut
from either end, a chain rewritten without someone's records, an emptied file; an unanchored log
still verifies, and verify says plainly what it could not have caught."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from gateway.cli.main import main as cli_main
from gateway.cli.worker import worker_config
from gateway.config import FromEnv, parse_config
from gateway.config.audit import AuditConfig
from gateway.telemetry.audit import AuditLog
from gateway.telemetry.audit.chain import ChainHead, rotated_files
from tests.telemetry.test_audit import edit, file_config, finish, lines, run

KEY = "the-audit-mac-key"
TENANTS = ("acme", "bob", "acme", "bob")


def anchored(path: Path, **fields: object) -> AuditConfig:
    return file_config(path, mac_key=FromEnv(KEY), checkpoints={"path": str(path.with_suffix(".cp"))}, **fields)


async def write_log(config: AuditConfig) -> None:
    async with AuditLog(config) as audit:
        for n, tenant in enumerate(TENANTS, start=1):
            record = run(n, tenant=tenant)
            await audit.room.acquire()
            audit.run_decided(record)
            audit.run_finished(finish(record))


def rechained_without_bob(old: list[bytes]) -> list[bytes]:
    """What an attacker without the key can do: drop bob's records and chain the rest again."""
    head, out = ChainHead(), []
    for raw in old:
        record = orjson.loads(raw)
        if record["tenant"] != "bob":
            line, head = head.seal({k: v for k, v in record.items() if k not in ("seq", "prev", "hash")})
            out.append(line + b"\n")
    return out


TAMPERS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "cut end": lambda ls: ls[:-2],
    "first records removed": lambda ls: ls[2:],
    "re-chained without bob": rechained_without_bob,
    "emptied": lambda ls: [],
}


def verify(path: Path, *args: str) -> int:
    return cli_main(["audit", "verify", str(path), *args])


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_MAC_KEY", KEY)


async def test_an_untouched_anchored_log_verifies_with_nothing_left_unchecked(
    tmp_path: Path, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(anchored(path))
    assert [r["alg"] for r in lines(path)] == ["hmac-sha256"] * 8
    checkpoints = lines(path.with_suffix(".cp"))
    assert checkpoints[-1]["seq"] == 8 and checkpoints[-1]["hash"] == lines(path)[-1]["hash"]
    assert verify(path, "--checkpoints", str(path.with_suffix(".cp"))) == 0
    out = capsys.readouterr()
    assert "OK: 8 record(s)" in out.out and "cannot detect" not in out.out + out.err


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("cut end", "cut: the log ends at seq 6, but a checkpoint vouches for seq 8"),
        ("first records removed", "missing: the log starts at seq 3, but no checkpoint marks a file starting there"),
        ("re-chained without bob", "tampered: the MAC of seq 1 does not match"),
        ("emptied", "missing: the log is empty, but a checkpoint vouches for seq 8"),
    ],
)
async def test_verify_catches_tampering_of_an_anchored_log(
    tmp_path: Path, key_env: None, capsys: pytest.CaptureFixture[str], tamper: str, problem: str
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(anchored(path))
    edit(path, TAMPERS[tamper])
    assert verify(path, "--checkpoints", str(path.with_suffix(".cp"))) == 1
    assert problem in capsys.readouterr().out


async def test_the_key_alone_catches_a_forged_chain_and_says_what_it_cannot_catch(
    tmp_path: Path, key_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(anchored(path))
    edit(path, TAMPERS["re-chained without bob"])
    assert verify(path) == 1
    assert "tampered: the MAC of seq 1 does not match" in capsys.readouterr().out
    await write_log(anchored(path := tmp_path / "cut.jsonl"))
    edit(path, TAMPERS["cut end"])
    assert verify(path) == 0  # a clean cut keeps every MAC: only the checkpoints show it
    err = capsys.readouterr().err
    assert "cannot detect" in err and "records cut from the end" in err and "--checkpoints" in err
    assert "a chain rewritten" not in err  # the key rules that out


async def test_a_keyed_log_is_not_verified_without_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(anchored(path))
    assert verify(path) == 2
    assert "give its key in $AUDIT_MAC_KEY" in capsys.readouterr().err


async def test_a_wrong_key_is_tampering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(anchored(path))
    monkeypatch.setenv("OTHER_KEY", "not-the-key")
    assert verify(path, "--key-env", "OTHER_KEY") == 1
    assert (
        "tampered: the MAC of seq 1 does not match (forged, or not the key it was written with)"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize("tamper", list(TAMPERS))
async def test_an_unanchored_log_verifies_with_a_plain_warning_of_what_it_cannot_detect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: str
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(file_config(path))
    edit(path, TAMPERS[tamper])
    assert verify(path) == 0  # what can be checked is intact; what cannot is said
    err = capsys.readouterr().err
    assert f"{path}: WARNING: not anchored: verify cannot detect" in err
    for blind_spot in ("records cut from the end", "a chain rewritten from scratch without some of its records"):
        assert blind_spot in err
    assert "audit.mac_key" in err and "audit.checkpoints" in err


async def test_rotated_files_each_start_where_a_checkpoint_says(tmp_path: Path, key_env: None) -> None:
    path = tmp_path / "audit.jsonl"
    checkpoints = str(path.with_suffix(".cp"))
    await write_log(anchored(path, max_bytes=2500, backups=50))
    await write_log(anchored(path, max_bytes=2500, backups=50))  # a restart continues the chain
    files = rotated_files(path)  # oldest first
    assert len(files) >= 3
    assert verify(path, "--checkpoints", checkpoints) == 0
    assert verify(files[-2], "--checkpoints", checkpoints) == 0  # an older file alone ends where the next began
    assert verify(path, "--with-backups", "--checkpoints", checkpoints) == 0
    files[0].unlink()  # the oldest file gone: the rest start at a file boundary a checkpoint marks
    assert verify(path, "--with-backups", "--checkpoints", checkpoints) == 0
    edit(path, lambda ls: ls[1:])
    assert verify(path, "--checkpoints", checkpoints) == 1


def test_checkpoints_need_a_key() -> None:
    with pytest.raises(ValueError, match="checkpoints: need mac_key"):
        AuditConfig(sink="file", path="/tmp/a", checkpoints={"path": "/tmp/a.cp"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secrets must come from the environment"):
        AuditConfig(mac_key="written-in-the-file")  # type: ignore[arg-type]


def test_each_worker_checkpoints_its_own_chain(tmp_path: Path) -> None:
    config = parse_config(
        {"audit": {"sink": "file", "path": str(tmp_path / "audit.jsonl"), "mac_key": "${KEY}",
                   "checkpoints": {"path": str(tmp_path / "audit.cp")}}},
        env={"KEY": KEY},
    )  # fmt: skip
    workers = [worker_config(config, index).audit for index in (0, 1)]
    assert [Path(w.path or "").name for w in workers] == ["audit.w0.jsonl", "audit.w1.jsonl"]
    assert [Path(w.checkpoints.path).name for w in workers if w.checkpoints] == ["audit.w0.cp", "audit.w1.cp"]
