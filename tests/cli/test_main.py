"""The command line as a user runs it: check-config, serve --mock-upstream, SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from tests.http.test_server import MALFORMED, SECRET, exchange_raw
from tests.support import free_port

pytestmark = [pytest.mark.integration]  # each test runs `python -m gateway` as a process

REPO = Path(__file__).resolve().parents[2]


def gateway_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_check_config_ok_prints_one_line_summary():
    done = gateway_cli("check-config", "config/gateway.yaml")
    assert done.returncode == 0
    assert done.stdout.strip() == (
        "config/gateway.yaml: OK: listen 127.0.0.1:8080, upstream http://127.0.0.1:8081/v1, pass-through, 0 policies"
    )


def test_check_config_names_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen:\n  port: high\nupstream:\n  api_key: sk-in-the-file\n  timeout: 3\nextra: 1\n")
    done = gateway_cli("check-config", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"{bad}: 4 problem(s)"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "listen.port", "upstream.api_key", "upstream.timeout", "extra",
    ]  # fmt: skip


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not become ready")


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`serve --mock-upstream` with `args` on a free port, ready: its URL and process (killed after)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--mock-upstream", "--port", str(port), *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture
def served() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with serving() as running:
        yield running


def test_serve_mock_upstream_runs_an_sdk_call(served):
    url, _process = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-anything", max_retries=0)
    assistant = client.beta.assistants.create(model="gpt-4o")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}, poll_interval_ms=5
    )
    assert run.status == "completed"
    assert client.beta.threads.messages.list(run.thread_id).data[0].role == "assistant"


def test_sigterm_lets_open_streams_finish(served):
    url, process = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-anything", max_retries=0)
    assistant = client.beta.assistants.create(model="gpt-4o")
    events = []
    with client.beta.threads.create_and_run(
        assistant_id=assistant.id, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "20"}
    ) as stream:
        for event in stream:
            events.append(event.event)
            if len(events) == 3:
                process.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                with pytest.raises((urllib.error.URLError, ConnectionError)):  # no longer accepting
                    urllib.request.urlopen(f"{url}/healthz", timeout=1)
    assert events[-1] == "thread.run.completed"
    assert process.wait(timeout=15) == 0


def test_serve_answers_unparsable_http_in_the_envelope_and_logs_no_key(served):
    """What `gateway serve` itself runs on (not a test server): the same envelope, and stderr (where
    aiohttp logged a traceback quoting the request) holds one line naming the kind of error."""
    url, process = served
    port = int(url.rsplit(":", 1)[1])
    answer = asyncio.run(exchange_raw("127.0.0.1", port, MALFORMED["obs_folded_authorization"]))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert answer.startswith(b"HTTP/1.0 400 ") and b'"code":"invalid_http"' in answer
    assert SECRET not in answer and SECRET not in stderr
    assert b"http_unparsable" in stderr and b"BadHttpMessage" in stderr


def test_sigterm_cuts_streams_still_open_at_the_drain_timeout_with_an_error_event(tmp_path):
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"listen": {"drain_timeout_s": 3}, "audit": {"sink": "file", "path": str(audit)}}))
    with serving("--config", str(config)) as (url, process):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-anything", max_retries=0)
        assistant = client.beta.assistants.create(model="gpt-4o")
        after_sigterm = []
        with client.beta.threads.create_and_run(  # a dozen events half a second apart: longer than the drain
            assistant_id=assistant.id, stream=True, extra_headers={"X-Simulator-Event-Delay-Ms": "500"}
        ) as stream:
            events = iter(stream)
            next(events)
            process.send_signal(signal.SIGTERM)
            with pytest.raises(openai.APIError) as cut:
                after_sigterm.extend(event.event for event in events)
        assert after_sigterm  # the stream kept flowing while the gateway drained
        assert "thread.run.completed" not in after_sigterm
        assert (cut.value.code, cut.value.type) == ("gateway_draining", "server_error"), repr(cut.value)
        assert "shutting down" in cut.value.message
        assert process.wait(timeout=30) == 0
    outcome = [r for r in map(json.loads, audit.read_text().splitlines()) if r["kind"] == "outcome"][-1]
    assert (outcome["error_type"], outcome["client_gone"], outcome["broken"]) == ("gateway_draining", False, False)
