"""`python -m gateway policy explain`: the decision, each violation, the body that would go upstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]  # each test runs `python -m gateway explain` as a process

REPO = Path(__file__).resolve().parents[2]
ENV = {"OPENAI_API_KEY": "sk-x", "TEAM_SEARCH_KEY": "k1", "TEAM_SUPPORT_KEY": "k2", "GATEWAY_ADMIN_KEY": "k3"}
SEARCH_OK = {
    "assistant_id": "asst_search_prod",
    "model": "gpt-4o",
    "metadata": {"cost_center": "cc-search-100", "request_origin": "web"},
    "thread": {"messages": [{"role": "user", "content": "Where is the onboarding doc?"}]},
    "max_completion_tokens": 4000,
}


def explain(tmp_path: Path, tenant: str, body: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "explain", "--config", "config/gateway.example.yaml",
         "--tenant", tenant, *extra, str(request)],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **ENV},
    )  # fmt: skip


def test_allowed_request_shows_the_modified_body(tmp_path):
    done = explain(tmp_path, "team-search", SEARCH_OK)
    assert done.returncode == 0, done.stderr
    assert "decision: allow" in done.stdout
    assert "modified: max_prompt_tokens, max_completion_tokens" in done.stdout
    forwarded = json.loads(done.stdout.split("body forwarded:\n", 1)[1])
    assert (forwarded["max_prompt_tokens"], forwarded["max_completion_tokens"]) == (16000, 1500)


def test_denied_request_lists_every_violation(tmp_path):
    body = {**SEARCH_OK, "model": "gpt-4-turbo", "temperature": 0.9, "tools": [{"type": "code_interpreter"}]}
    done = explain(tmp_path, "team-search", body)
    assert done.returncode == 1
    assert "decision: deny" in done.stdout
    for rule in ("models.allow", "sampling.temperature", "tools.allowed_types"):
        assert f"violation [{rule}]" in done.stdout
    assert "body forwarded" not in done.stdout


def test_shadowed_rules_are_shown_but_allow(tmp_path):
    body = {
        "assistant_id": "asst_1",
        "model": "gpt-4o-mini",
        "metadata": {"ticket_id": "T-1"},
        "thread": {"messages": [{"role": "user", "content": "x"}] * 60},
    }
    done = explain(tmp_path, "team-support", body)
    assert done.returncode == 0, done.stdout
    assert "shadowed  [content.max_messages] thread.messages" in done.stdout


def test_model_from_the_assistant(tmp_path):
    body = {k: v for k, v in SEARCH_OK.items() if k != "model"}
    assert explain(tmp_path, "team-search", body).returncode == 1  # unknown model: fail closed
    assert explain(tmp_path, "team-search", body, "--assistant-model", "gpt-4o").returncode == 0


@pytest.mark.parametrize(
    ("tenant", "body", "says"),
    [("nobody", SEARCH_OK, "no tenant named 'nobody'"), ("team-search", {"thread": {}}, "param assistant_id")],
)
def test_bad_questions_exit_2(tmp_path, tenant, body, says):
    done = explain(tmp_path, tenant, body)
    assert done.returncode == 2
    assert says in done.stderr
