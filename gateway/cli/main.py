"""Command line: serve, check-config, policy explain, audit verify, assistants import, state migrate, mock-upstream."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gateway.config import ConfigError, load_config, parse_config
from gateway.schema.requests import RunRoute


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config (default: built-in defaults)")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.add_argument(
        "--mock-upstream", action="store_true", help="run the built-in simulator in-process as the upstream"
    )
    serve.add_argument("--workers", type=int, help="override listen.workers: processes sharing the port (needs Redis)")

    check = commands.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("path")

    policy = commands.add_parser("policy", help="policy tools").add_subparsers(dest="policy_command", required=True)
    explain = policy.add_parser("explain", help="what a tenant's policy does with a request (exit 0 allow, 1 deny)")
    explain.add_argument("--config", required=True)
    explain.add_argument("--tenant", required=True)
    explain.add_argument("--route", choices=[r.value for r in RunRoute], default=RunRoute.CREATE_THREAD_AND_RUN.value)
    explain.add_argument("--assistant-model", help="the assistant's model, when the request omits `model`")
    explain.add_argument("request", help="the request body, as JSON")

    audit = commands.add_parser("audit", help="audit log tools").add_subparsers(dest="audit_command", required=True)
    verify = audit.add_parser(
        "verify", help="check hash-chained audit files (exit 0 intact, 1 tampered or cut, 2 unreadable or no key, "
        "3 intact but records lost)",
    )  # fmt: skip
    verify.add_argument("paths", nargs="+", metavar="path", help="each its own chain (one per worker with --workers)")
    verify.add_argument("--with-backups", action="store_true", help="also the rotated files, oldest first, as one chain")
    verify.add_argument(
        "--checkpoints", action="append", default=[], metavar="FILE",
        help="the checkpoints file (audit.checkpoints.path) of each path, in order: catches records cut from either end",
    )  # fmt: skip
    verify.add_argument(
        "--key-env", default="AUDIT_MAC_KEY", metavar="NAME",
        help="the environment variable holding audit.mac_key (default AUDIT_MAC_KEY): checks each record's MAC",
    )  # fmt: skip

    assistants = commands.add_parser("assistants", help="assistants tools").add_subparsers(
        dest="assistants_command", required=True
    )
    imported = assistants.add_parser("import", help="an export of old assistants → the config's `assistants:` (YAML)")
    imported.add_argument("path", help="JSON: GET /v1/assistants saved to a file, a list of assistants, or one")
    imported.add_argument("--tenant", action="append", default=[], help="who may use them (repeatable); default: all")

    state = commands.add_parser("state", help="shared state tools").add_subparsers(dest="state_command", required=True)
    migrate = state.add_parser(
        "migrate", help="move a Redis written before keys were hash-tagged per tenant to today's layout (exit 0 done)"
    )
    migrate.add_argument("--config", required=True, help="the gateway's config: its state.url and its tenants")

    mock = commands.add_parser("mock-upstream", help="run the built-in Assistants API simulator")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8081)
    mock.add_argument("--event-delay-ms", type=float, default=0.0, help="pause between stream events")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    if args.command == "policy":
        return _explain(args)
    if args.command == "audit":
        from gateway.cli.audit import verify_audit

        return verify_audit(args.paths, args.with_backups, args.checkpoints, args.key_env)
    if args.command == "assistants":
        from gateway.cli.assistants import run

        return run(args.path, args.tenant)
    if args.command == "state":
        return _migrate_state(args.config)
    if args.command == "mock-upstream":
        from gateway.cli.serve import serve_simulator
        from gateway.simulator import SimulatorSettings

        serve_simulator(args.host, args.port, SimulatorSettings(event_delay_ms=args.event_delay_ms))
        return 0
    flags = (("host", args.host), ("port", args.port), ("workers", args.workers))
    overrides = {key: value for key, value in flags if value is not None}
    try:
        config = load_config(args.config) if args.config else parse_config({})
        if overrides:
            raw = config.model_dump(mode="json", exclude_none=True, round_trip=True)
            config = config.model_copy(update={"listen": config.listen.model_validate({**raw["listen"], **overrides})})
    except ConfigError as exc:
        return _report(exc)
    except ValidationError as exc:
        return _report(ConfigError("command line", [f"listen.{e['loc'][0]}: {e['msg']}" for e in exc.errors()]))
    problems = config.worker_problems()  # again: the overrides may have changed listen
    if problems:
        return _report(ConfigError(args.config or "command line", problems))
    config_path = Path(args.config) if args.config else None
    if config.listen.workers > 1:
        from gateway.cli.workers import serve_workers

        return serve_workers(config, config_path=config_path, mock_upstream=args.mock_upstream)
    from gateway.cli.serve import serve

    serve(config, config_path=config_path, mock_upstream=args.mock_upstream)
    return 0


def _migrate_state(path: str) -> int:
    import asyncio
    import json

    from gateway.state.redis_migrate import migrate

    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report(exc)
    state = config.state
    if state.backend != "redis" or state.url is None:
        print(f"{path}: state.backend is {state.backend}: nothing is kept in Redis", file=sys.stderr)
        return 2
    if state.cluster:
        print("state.cluster: the layout before hash tags never ran on a cluster: nothing to move", file=sys.stderr)
        return 0
    moved = asyncio.run(migrate(state.url, list(config.tenants or {})))
    print(json.dumps(moved.summary()))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.cli.explain import explain

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _report(exc)
    code, report = explain(config, args.tenant, RunRoute(args.route), Path(args.request), args.assistant_model)
    print(report, file=sys.stderr if code == 2 else sys.stdout)
    return code


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report(exc)
    print(f"{path}: OK: {config.summary()}")
    return 0


def _report(exc: ConfigError) -> int:
    print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
