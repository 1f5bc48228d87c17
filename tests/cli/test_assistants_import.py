"""`python -m gateway assistants import`: an export of old assistants becomes servable config."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from gateway.cli.main import main
from gateway.config import parse_config

EXPORT = {
    "object": "list",
    "data": [
        {"id": "asst_support", "object": "assistant", "created_at": 1700000000, "name": "Support", "description": None,
         "model": "gpt-4o", "instructions": "You help with orders.", "temperature": 0.3, "top_p": 1.0,
         "tools": [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}},
                   {"type": "file_search"}],
         "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}, "metadata": {"team": "support"},
         "response_format": "auto"},
        {"id": "asst_plain", "object": "assistant", "model": "gpt-4o-mini", "tools": []},
    ],
    "first_id": "asst_support", "last_id": "asst_plain", "has_more": False,
}  # fmt: skip


def test_an_export_becomes_the_config_section_that_serves_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "assistants.json"
    path.write_bytes(orjson.dumps(EXPORT))
    assert main(["assistants", "import", str(path), "--tenant", "team-support"]) == 0
    section = yaml.safe_load(capsys.readouterr().out)
    assert list(section["assistants"]) == ["asst_support", "asst_plain"]
    assert section["assistants"]["asst_support"]["instructions"] == "You help with orders."
    config = parse_config({
        "upstream": {"protocol": "responses", "api_key": "${UP}"},
        "tenants": {"team-support": {"keys": ["${KEY}"]}}, **section,
    }, env={"UP": "sk-up", "KEY": "sk-key"})  # fmt: skip
    assert config.assistants["asst_support"].tenants == ("team-support",)
    assert config.assistants["asst_plain"].model == "gpt-4o-mini"


def test_what_cannot_be_served_is_named_and_nothing_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps([{"id": "asst_x", "model": "gpt-4o", "tools": [{"type": "retrieval"}]}, {"model": "m"}]))
    assert main(["assistants", "import", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "asst_x.tools" in err and "[1]: an assistant object with an id" in err
