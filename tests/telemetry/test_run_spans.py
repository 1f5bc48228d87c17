"""The run's GenAI attributes, pure: the convention's finish reasons, usage details, output type."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.domain import RunRecord, Usage
from gateway.telemetry.run_spans import content_attributes, finish_reason, output_type, run_attributes


def record(**fields: Any) -> RunRecord:
    return RunRecord(request_id="req_1", route="create_thread_and_run", tenant="team", started=0.0, **fields)


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("completed", None, "stop"),
        ("requires_action", None, "tool_call"),
        ("incomplete", "max_completion_tokens", "length"),
        ("incomplete", "max_prompt_tokens", "length"),
        ("incomplete", "content_filter", "content_filter"),
        ("failed", None, "error"),
        ("expired", None, "error"),
        ("cancelled", None, "cancelled"),
        ("queued", None, None),
        ("in_progress", None, None),
    ],
)
def test_a_runs_status_is_the_conventions_finish_reason(status: str, reason: str | None, expected: str | None) -> None:
    run = record(status=status, incomplete_reason=reason)
    assert finish_reason(run) == expected
    assert run_attributes(run).get("gen_ai.response.finish_reasons") == ((expected,) if expected else None)


def test_cached_and_reasoning_tokens_are_reported_when_the_upstream_reports_them() -> None:
    usage = Usage.from_json({
        "prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
        "prompt_token_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 12},
    })  # fmt: skip
    attributes = run_attributes(record(usage=usage))
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 64
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 12
    plain = run_attributes(record(usage=Usage(100, 40, 140)))
    assert "gen_ai.usage.cache_read.input_tokens" not in plain and "gen_ai.usage.reasoning.output_tokens" not in plain


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [(None, "text"), ("auto", "text"), ({"type": "text"}, "text"), ({"type": "json_object"}, "json"),
     ({"type": "json_schema", "json_schema": {"name": "x"}}, "json")],
)  # fmt: skip
def test_the_output_type_follows_the_response_format(response_format: Any, expected: str) -> None:
    assert output_type({"response_format": response_format} if response_format else {}) == expected


def test_each_output_message_carries_the_finish_reason() -> None:
    attributes = content_attributes({}, ["Paris."], "stop")
    assert '"finish_reason":"stop"' in str(attributes["gen_ai.output.messages"])
