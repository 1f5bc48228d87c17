"""Hostile-input and fuzz support: the whole-pipeline config, and what every answer must be.

Hypothesis runs under the `ci` profile unless HYPOTHESIS_PROFILE says otherwise: derandomized (the
same cases every run, so CI is reproducible), no deadline (the gateway is driven over real sockets),
no example database. `FUZZ_SCALE=10` multiplies every test's example count for a longer local hunt;
`HYPOTHESIS_PROFILE=explore` draws fresh random cases instead.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from hypothesis import HealthCheck, settings
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
           HealthCheck.filter_too_much, HealthCheck.large_base_example]  # fmt: skip
settings.register_profile("ci", derandomize=True, deadline=None, database=None, suppress_health_check=_HEALTH,
                          print_blob=True)  # fmt: skip
settings.register_profile("explore", derandomize=False, deadline=None, suppress_health_check=_HEALTH, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FUZZ_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
TEAM_KEY = "sk-fuzz-team"
ADMIN_KEY = "sk-fuzz-admin"
ENV = {"UP": "sk-upstream", "TEAM": TEAM_KEY, "OTHER": "sk-fuzz-other", "ADMIN": ADMIN_KEY}
MAX_BODY = 64 * 1024


def examples(count: int) -> int:
    return max(1, int(count * FUZZ_SCALE))


def full_pipeline(tmp_path: Path) -> dict[str, Any]:
    """Tenants, a policy that clamps (so bodies are re-serialised), limits with a token budget, admin,
    the audit log with content digests, tracing with content capture."""
    return {
        "listen": {"max_body_bytes": MAX_BODY, "max_upload_bytes": MAX_BODY},
        "upstream": {"api_key": "${UP}", "read_timeout_s": 10},
        "tenants": {
            "team": {"keys": ["${TEAM}"], "policy": "team", "unknown_objects": "allow"},  # (generated ids)
            "other": {"keys": ["${OTHER}"], "policy": "team", "unknown_objects": "deny"},
        },
        "policies": {
            "team": {
                "tools": {"allowed_types": ["function", "file_search", "code_interpreter"], "max_tools": 8},
                "tokens": {
                    "max_prompt_tokens": {"max": 4000, "action": "clamp", "default": 2000},
                    "max_completion_tokens": {"max": 1000, "action": "clamp"},
                },
                "sampling": {"temperature": {"min": 0, "max": 1.5}},
                "content": {"max_messages": 20, "max_text_chars": 20000, "max_attachments": 5},
                "metadata": {"allowed_values": {"origin": ["web", "api"]}},
            }
        },
        "limits": {
            "tenants": {
                "team": {"requests_per_minute": 10_000_000, "concurrent_runs": 10_000, "tokens_per_day": 10**13},
                "other": {"requests_per_minute": 10_000_000},
            }
        },
        "admin": {"keys": ["${ADMIN}"]},
        "audit": {"enabled": True, "sink": "file", "path": str(tmp_path / "audit.log"), "content": "hash"},
        "telemetry": {"tracing": {"enabled": "on", "capture_content": True}},
    }


class DiscardSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def team_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TEAM_KEY}", "OpenAI-Beta": "assistants=v2", **extra}


def assert_envelope(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Any error: OpenAI's envelope, exactly; a 5xx only if it is the upstream's own, passed through."""
    assert status < 500 or "X-Upstream-Request-ID" in headers, (status, body[:500])
    error = orjson.loads(body)["error"]
    assert set(error) >= {"message", "type", "param", "code"}, body[:500]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    if "X-Upstream-Request-ID" not in headers:  # the gateway's own: nothing more, nothing less
        assert set(error) == {"message", "type", "param", "code"}, body[:500]
    return dict(error)


CASES: Counter[str] = Counter()
"""Generated cases run per fuzz test (every example, shrinking included), reported at the end."""


def count_case() -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("[")[0].rsplit("::", 1)[-1]
    CASES[test] += 1


async def exchange(
    session: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any
) -> tuple[int, Mapping[str, str], bytes]:
    """One request; the whole answer (streams included) must arrive within the session's timeout."""
    async with session.request(method, url, **kwargs) as response:
        return response.status, response.headers, await response.read()


def check_answer(status: int, headers: Mapping[str, str], body: bytes, *, method: str = "POST") -> None:
    """What every answer to hostile input must be: a success, or a 4xx in the envelope; never the
    gateway's own 5xx. That includes a message that is not valid HTTP/1.1, which aiohttp's parser
    refuses before any middleware runs (gateway/http/server.py answers it).

    The one exception to the envelope: an `Expect` other than 100-continue on a route without the
    gateway's expect handler (/healthz, /metrics, ...), which aiohttp refuses in plain text with 417.
    """
    if "X-Request-ID" not in headers:  # every other answer carries one
        assert status == 417, (status, body[:300])
        assert headers.get("Content-Type", "").startswith("text/plain"), (status, body[:300])
        return
    if status >= 400 and method != "HEAD":
        assert_envelope(status, headers, body)
    assert status < 500 or "X-Upstream-Request-ID" in headers, (status, body[:500])
