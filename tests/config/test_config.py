from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def problems(raw: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env=env or {})
    return caught.value.problems


def test_defaults_need_no_file():
    config = parse_config(None, env={})
    assert config.listen.port == 8080
    assert str(config.upstream.base_url) == "https://api.openai.com/v1"
    assert config.tenants is None


def test_every_problem_is_named_with_its_key_path():
    found = problems(
        {
            "listen": {"port": "eighty", "bogus": 1},
            "upstream": {"read_timeout_s": -1, "unknown_fields": "maybe"},
            "surprise": {},
        }
    )
    assert [p.split(":")[0] for p in found] == [
        "listen.port",
        "listen.bogus",
        "upstream.read_timeout_s",
        "upstream.unknown_fields",
        "surprise",
    ]
    assert "listen.bogus: unknown key" in found


def test_env_interpolation_with_defaults_and_types():
    config = parse_config(
        {
            "listen": {"port": "${PORT}", "host": "${HOST:-0.0.0.0}"},
            "upstream": {"api_key": "${KEY}"},
            "tenants": {"t": {"keys": ["${KEY}"]}},
        },
        env={"PORT": "9999", "KEY": "sk-from-env"},
    )
    assert config.listen.port == 9999
    assert config.listen.host == "0.0.0.0"
    assert config.upstream.api_key is not None
    assert config.upstream.api_key.get_secret_value() == "sk-from-env"


def test_unset_variable_without_default_names_the_key():
    assert problems({"upstream": {"api_key": "${MISSING}"}}) == [
        "upstream.api_key: environment variable MISSING is not set"
    ]


def test_secrets_written_in_the_file_are_refused():
    found = problems(
        {"upstream": {"api_key": "sk-live-123"}, "tenants": {"a": {"keys": ["${K}", "plain-secret"]}}},
        env={"K": "x"},
    )
    assert found == [
        "upstream.api_key: secrets must come from the environment (${VAR}), not the file",
        "tenants.a.keys[1]: keys must come from the environment (${VAR}) or be a sha256:<hex> digest",
    ]


def test_credentials_must_fit_the_mode():
    assert problems({"tenants": {"a": {"keys": ["${K}"]}}}, env={"K": "x"}) == [
        "(top level): tenants.a: needs upstream_api_key, or set upstream.api_key"
    ]
    assert problems({"upstream": {"api_key": "${K}"}}, env={"K": "x"}) == [
        "(top level): upstream.api_key without tenants would let anyone spend it: define tenants"
    ]
    caller_mode = {"upstream": {"credential": "caller", "api_key": "${K}"}, "tenants": {"a": {"keys": ["${K}"]}}}
    assert problems(caller_mode, env={"K": "x"}) == [
        "(top level): tenants.a: upstream.credential is 'caller', so no upstream key may be set"
    ]


def test_tenants_name_existing_policies():
    raw = {"upstream": {"api_key": "${K}"}, "tenants": {"a": {"keys": ["${K}"], "policy": "nope"}}}
    assert problems(raw, env={"K": "x"}) == ["(top level): tenants.a.policy: no policy named 'nope' under policies"]


def test_allowed_paths_are_below_the_api_root():
    assert problems({"upstream": {"allowed_paths": ["/v1/threads"]}})[0].startswith("upstream.allowed_paths")


def test_shipped_configs_are_valid(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("TEAM_SEARCH_KEY", "k1")
    monkeypatch.setenv("TEAM_SUPPORT_KEY", "k2")
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "k3")
    assert load_config(REPO / "config" / "gateway.yaml").tenants is None
    example = load_config(REPO / "config" / "gateway.example.yaml")
    assert example.tenants is not None and set(example.tenants) == {"team-search", "team-support"}


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(bad)


def test_an_empty_variable_is_no_credential_and_no_key():
    raw = {
        "upstream": {"api_key": "${UP}"},
        "tenants": {"a": {"keys": ["${A}"], "upstream_api_key": "${A_UP:-}"}},
    }
    config = parse_config(raw, env={"UP": "sk-up", "A": "key-a"})
    assert config.tenants is not None and config.tenants["a"].upstream_api_key is None
    assert problems(raw, env={"UP": "sk-up", "A": ""})[0] == (
        "tenants.a.keys[0]: an empty key would match an empty Authorization header"
    )


def test_the_facades_sections_need_the_responses_protocol():
    [assistants] = problems({"assistants": {"asst_a": {"model": "gpt-4o"}}})
    assert "need upstream.protocol: responses" in assistants
    [model_map] = problems({"upstream": {"model_map": {"gpt-4o": "gpt-4.1"}}})
    assert "upstream.model_map" in model_map and "upstream.protocol: responses" in model_map
    assert parse_config({"upstream": {"protocol": "responses", "model_map": {"gpt-4o": "gpt-4.1"}}}, env={})


def test_metrics_keys_come_from_the_environment_and_their_port_is_not_the_main_one():
    assert problems({"telemetry": {"metrics": {"keys": ["plain-secret"]}}}) == [
        "telemetry.metrics.keys[0]: keys must come from the environment (${VAR}) or be a sha256:<hex> digest"
    ]
    assert problems({"listen": {"port": 9000}, "telemetry": {"metrics": {"port": 9000}}}) == [
        "(top level): telemetry.metrics.port: the same as listen.port; leave it out to serve /metrics there"
    ]
    assert problems({"admin": {"failed_attempts": {"max_failures": 0}}})[0].startswith("admin.failed_attempts.max_failures")
