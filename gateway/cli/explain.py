"""`python -m gateway policy explain`: what the policy would do with one request, offline."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.config import Config
from gateway.errors import InvalidRequest
from gateway.policy.decision import Facts, decide
from gateway.schema.requests import RunRoute, validate_run_request

ALLOW, DENY, ERROR = 0, 1, 2


def explain(config: Config, tenant: str, route: RunRoute, request_file: Path, assistant_model: str | None) -> tuple[int, str]:
    """(exit code, report): 0 allow, 1 deny, 2 the question itself is wrong."""
    if config.tenants is not None and tenant not in config.tenants:
        return ERROR, f"no tenant named {tenant!r} (tenants: {', '.join(sorted(config.tenants))})"
    try:
        data = orjson.loads(request_file.read_bytes())
        request = validate_run_request(route, data, unknown_fields=config.upstream.unknown_fields)
    except OSError as exc:
        return ERROR, f"cannot read {request_file}: {exc.strerror}"
    except orjson.JSONDecodeError as exc:
        return ERROR, f"{request_file}: not JSON: {exc}"
    except InvalidRequest as exc:
        return ERROR, f"the upstream contract refuses this body before any policy (400, param {exc.param}): {exc.message}"
    policy = config.policy_for(tenant)
    if policy is None:
        return ALLOW, f"tenant {tenant}: no policy applies\ndecision: allow\nbody forwarded unchanged"
    decision = decide(route, request, data, policy, Facts(assistant_model=assistant_model))
    lines = [f"tenant {tenant}: policy {config.policy_name_for(tenant)}"]
    lines.append(f"decision: {'allow' if decision.allowed else 'deny'}")
    lines += [f"  violation [{v.rule}] {v.param or '-'}: {v.message}" for v in decision.violations]
    lines += [f"  shadowed  [{v.rule}] {v.param or '-'}: {v.message} (would deny)" for v in decision.shadowed]
    if decision.modified:
        lines.append(f"modified: {', '.join(decision.modified)}")
    if decision.allowed:
        lines.append("body forwarded:")
        lines.append(orjson.dumps(decision.body, option=orjson.OPT_INDENT_2).decode())
    return (ALLOW if decision.allowed else DENY), "\n".join(lines)

