"""The machine's description, the gateway's own records (audit, metrics, logs), the targets of
issue 15 judged from one run's numbers, and the markdown report."""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .measure import REPO
from .targets import LABELS, TARGETS, TWO_CORES

MIB = 1024


# --- the machine ----------------------------------------------------------------------------------


def _cmd(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else ""


def machine(args: object, layout: object, venv: Path, pyspy: Path | None) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), "?")
    mhz = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("cpu MHz")), "?")
    mem = next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
    versions = {}
    for dist in ("aiohttp", "uvloop", "orjson", "pydantic", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http",
                 "prometheus-client", "structlog", "limits", "multidict", "yarl", "cachetools"):  # fmt: skip
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    litellm = _cmd([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"])
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    dirty = _cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "gateway"])
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "nproc": len([l for l in cpuinfo.splitlines() if l.startswith("processor")]),
        "cpu_model": model,
        "cpu_mhz": mhz,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "debian": debian,
        "python": sys.version.split()[0],
        "versions": versions,
        "nginx": _cmd(["nginx", "-v"]),
        "wrk": _cmd(["wrk", "-v"]),
        "litellm": litellm,
        "py_spy": _cmd([str(pyspy), "--version"]) if pyspy else None,
        "git_commit": _cmd(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "gateway_tree_dirty": bool(dirty),
        "layout": vars(layout),
        "started": _cmd(["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    }


# --- the gateway's own records ------------------------------------------------------------------------


def audit_counts(audit_dir: Path | None) -> dict:
    if audit_dir is None or not audit_dir.exists():
        return {"error": "no audit directory"}
    import orjson

    kinds: dict[str, int] = {}
    outcome_status: dict[str, int] = {}
    client_gone = with_error = with_usage = 0
    error_types: dict[str, int] = {}
    files = sorted(audit_dir.glob("audit.jsonl*"))
    bad = 0
    for path in files:
        with path.open("rb") as handle:
            for line in handle:
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    bad += 1
                    continue
                kinds[rec.get("kind")] = kinds.get(rec.get("kind"), 0) + 1
                if rec.get("kind") != "outcome":
                    continue
                key = f"{rec.get('upstream_status')}/{rec.get('status')}"
                outcome_status[key] = outcome_status.get(key, 0) + 1
                if rec.get("client_gone"):
                    client_gone += 1
                elif rec.get("error_type"):
                    with_error += 1
                    error_types[rec["error_type"]] = error_types.get(rec["error_type"], 0) + 1
                if rec.get("usage"):
                    with_usage += 1
    return {
        "files": len(files),
        "records": sum(kinds.values()),
        "undecodable": bad,
        "kinds": kinds,
        "outcomes_by_upstream_status_and_run_status": outcome_status,
        "outcomes_client_gone": client_gone,
        "outcomes_with_error_client_present": with_error,
        "error_types": error_types,
        "outcomes_with_usage": with_usage,
    }


def metric_totals(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    wanted = {"gateway_requests", "gateway_audit_records", "gateway_runs", "gateway_upstream_errors",
              "gateway_run_decisions", "gateway_active_streams", "gateway_broken_streams", "gateway_streams"}  # fmt: skip
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("tenant", "method"))
            bucket = out.setdefault(family.name, {})
            bucket[labels] = bucket.get(labels, 0) + sample.value
    return out


def log_levels(path: Path) -> dict:
    levels: dict[str, int] = {}
    events: dict[str, int] = {}
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if line.strip() and not line.startswith("#"):
                levels["non_json"] = levels.get("non_json", 0) + 1
            continue
        level = rec.get("level", "?")
        levels[level] = levels.get(level, 0) + 1
        if level in ("warning", "error", "critical", "exception"):
            events[rec.get("event", "?")] = events.get(rec.get("event", "?"), 0) + 1
    return {"levels": levels, "warning_or_error_events": events}


# --- the targets -------------------------------------------------------------------------------------


def _get(d: object, *path: str) -> object:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _sub(a: object, b: object) -> float | None:
    return a - b if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None  # type: ignore[operator]


def _div(a: object, b: object) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None  # type: ignore[operator]


def _paired(x: dict, kind: str, metric: str, q: str) -> float | None:
    return _sub(_get(x, kind, "paired", "target", metric, q), _get(x, kind, "paired", "baseline", metric, q))


def summary_rows(results: dict) -> dict[str, dict]:
    t = results["targets"]
    d = t.get("direct", {})
    rows = {}
    for name in TARGETS:
        x = t.get(name)
        if x is None:
            continue
        hold = _get(x, "stream", "hold") or {}
        rows[name] = {
            "rps": _get(x, "nonstream", "saturation", "rps"),
            "rps_ratio": _div(_get(x, "nonstream", "saturation", "rps"), _get(d, "nonstream", "saturation", "rps")),
            "serial_rps": _get(x, "nonstream", "serial", "rps"),
            "serial_p50_us": _get(x, "nonstream", "serial", "latency_us", "p50"),
            "serial_p99_us": _get(x, "nonstream", "serial", "latency_us", "p99"),
            # Added latency: from the paired runs (target and direct alternating, same moments).
            "added_p50_us": _paired(x, "nonstream", "latency_us", "p50"),
            "added_p99_us": _paired(x, "nonstream", "latency_us", "p99"),
            "ttfb_p50_us": _get(x, "stream", "serial", "ttfb_us", "p50"),
            "ttfb_added_p50_us": _paired(x, "stream", "ttfb_us", "p50"),
            "ttfb_added_p99_us": _paired(x, "stream", "ttfb_us", "p99"),
            "event_p50_us": _get(x, "stream", "events", "delay_us", "p50"),
            "event_p99_us": _get(x, "stream", "events", "delay_us", "p99"),
            "event_added_p50_us": _sub(_get(x, "stream", "paired", "events", "target", "delay_us", "p50"),
                                       _get(x, "stream", "paired", "events", "baseline", "delay_us", "p50")),
            "event_added_p99_us": _sub(_get(x, "stream", "paired", "events", "target", "delay_us", "p99"),
                                       _get(x, "stream", "paired", "events", "baseline", "delay_us", "p99")),
            "streams_per_s": _get(x, "stream", "throughput", "streams_per_s"),
            "streams_ratio": _div(_get(x, "stream", "throughput", "streams_per_s"),
                                  _get(d, "stream", "throughput", "streams_per_s")),
            "held_open": _get(hold, "ready", "open"),
            "held_requested": hold.get("requested"),
            "rss_open_kib": _get(hold, "memory_open", "rss_kib"),
            "pss_open_kib": _get(hold, "memory_open", "pss_kib"),
            "rss_per_stream_kib": hold.get("rss_per_stream_kib"),
            "errors": {k: v for k, v in x.items() if k.endswith("_error")},
        }  # fmt: skip
    return rows


def soak_growth(soak: dict) -> dict:
    """RSS from the checkpoint after 30 % of the requests (the designed retention is full by then) to the
    end; and a least-squares slope over the same checkpoints."""
    cps = soak.get("checkpoints") or []
    if len(cps) < 4:
        return {}
    total = cps[-1]["requests"]
    start = next((i for i, c in enumerate(cps) if c["requests"] >= 0.3 * total), 1)
    tail = cps[start:]
    xs = [c["requests"] for c in tail]
    ys = [c["rss_kib"] for c in tail]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    first_fill = next((c for c in cps if c["requests"] >= soak.get("max_owned_objects", 0)), cps[1])
    return {
        "from_requests": xs[0],
        "to_requests": xs[-1],
        "rss_from_kib": ys[0],
        "rss_to_kib": ys[-1],
        "growth_kib": ys[-1] - ys[0],
        "slope_bytes_per_request": slope * 1024,
        "rss_start_kib": cps[0]["rss_kib"],
        "retained_bytes_per_request_until_full": (first_fill["rss_kib"] - cps[0]["rss_kib"]) * 1024
        / max(1, first_fill["requests"]),
    }


SOAK_TOLERANCE_KIB = 4 * 1024  # allocator noise between checkpoints


def evaluate(results: dict) -> list[dict]:
    rows = summary_rows(results)
    g = rows.get("gateway", {})
    out = []

    def add(name: str, value: float | None, limit: str, ok: bool | None, note: str = "") -> None:
        out.append({"target": name, "value": value, "limit": limit,
                    "met": None if value is None or ok is None else bool(ok), "note": note})  # fmt: skip

    v = g.get("added_p50_us")
    add("added latency p50, serial", v, "≤ 0.5 ms", v is not None and v <= 500)
    v = g.get("added_p99_us")
    add("added latency p99, serial", v, "≤ 2 ms", v is not None and v <= 2000)
    one_process = "one gateway process (this layout gives the proxy one core)"
    for row, peer, need, label in (("gateway", "bare", 0.70, "≥ 0.7× bare aiohttp"),
                                   ("gateway", "litellm", 15.0, "≥ 15× LiteLLM"),
                                   ("gateway-all-spans", "bare", 0.40, "≥ 0.4× bare aiohttp, every span sampled")):  # fmt: skip
        x = rows.get(row, {})
        for mode, key in (("saturation, 64 connections", "rps"), ("serial client", "serial_rps")):
            ratio = _div(x.get(key), rows.get(peer, {}).get(key))
            note = f"{_num(x.get(key))} vs {_num(rows.get(peer, {}).get(key))} req/s; {one_process}"
            add(f"{row} throughput vs {peer} ({mode})", ratio, label, ratio is not None and ratio >= need, note)
    ratio = _div(g.get("rps"), g.get("serial_rps"))
    add("saturation ≥ serial (no slow-down under concurrency)", ratio, "≥ 1×", ratio is not None and ratio >= 1,
        f"{_num(g.get('rps'))} at saturation vs {_num(g.get('serial_rps'))} req/s serial")
    v = g.get("ttfb_added_p50_us")
    add("streaming TTFB added (p50)", v, "≤ 1 ms", v is not None and v <= 1000,
        f"p99 added: {_ms(g.get('ttfb_added_p99_us'))}")
    v = g.get("event_added_p99_us")
    add("per-event relay delay added, p99", v, "≤ 0.2 ms", v is not None and v <= 200,
        f"p50 added: {_ms(g.get('event_added_p50_us'))}")
    facade = _get(results, "gateway", "facade_events") or {}
    on_responses, plain = (facade.get(p) or {} for p in ("responses", "assistants")) if isinstance(facade, dict) else ({}, {})
    v = on_responses.get("p99_us")
    add("Assistants on Responses: per-event delay added, p99", v, "≤ 0.3 ms", v is not None and v <= 300,
        f"p50 {_ms(on_responses.get('p50_us'))}; the same gateway passing the Assistants API through: p99 "
        f"{_ms(plain.get('p99_us'))} (bench/facade_events.py, upstream send → client receipt)")
    redis = rows.get("gateway-redis", {})
    ratio = _div(redis.get("rps"), g.get("rps"))
    add("Redis state: throughput vs memory state (saturation)", ratio, "≥ 0.8×", ratio is not None and ratio >= 0.8,
        f"{_num(redis.get('rps'))} vs {_num(g.get('rps'))} req/s")
    state = _get(results, "gateway", "state_memory") or {}
    v = state.get("per_object_bytes") if isinstance(state, dict) else None
    add("memory state: bytes per remembered object", v, "≤ 300 B", v is not None and v <= 300,
        f"{_num(state.get('settled_bytes'))} B per settled run call, {_num(state.get('held_bytes'))} B per run "
        "call whose run holds its slot (bench/state_memory.py)" if v is not None else "not measured")  # fmt: skip
    held, rss = g.get("held_open"), g.get("rss_open_kib")
    requested = g.get("held_requested") or 0
    if held and rss:
        projected = rss if requested >= 5000 else None
        note = f"{held} of {requested} opened; RSS {rss / MIB:.0f} MiB, {g.get('rss_per_stream_kib') or 0:.1f} KiB per stream"
        if requested < 5000 and g.get("rss_per_stream_kib"):
            base = rss - g["rss_per_stream_kib"] * held
            projected = base + g["rss_per_stream_kib"] * 5000
            note += f"; projected to 5,000 from {held}"
        ok = projected is not None and projected <= 1024 * MIB and (requested < 5000 or held >= 5000)
        add("5,000 open streams in ≤ 1 GiB RSS", projected, "≤ 1024 MiB", ok, note)
    else:
        add("5,000 open streams in ≤ 1 GiB RSS", None, "≤ 1024 MiB", None, "not measured")
    soak = _get(results, "gateway", "soak") or {}
    growth = soak_growth(soak) if isinstance(soak, dict) else {}
    if growth:
        ok = growth["growth_kib"] <= SOAK_TOLERANCE_KIB
        add(f"no RSS growth across the soak ({soak.get('requests')} requests)", growth["growth_kib"],
            f"≤ {SOAK_TOLERANCE_KIB // 1024} MiB after 30 %", ok,
            f"slope {growth['slope_bytes_per_request']:.1f} B/request from {growth['from_requests']} requests on")  # fmt: skip
    else:
        add("no RSS growth across the soak", None, "", None, "not measured")
    integ = _get(results, "gateway", "integrity") or {}
    if isinstance(integ, dict) and "audit" in integ and "load" in integ:
        lost = nothing_lost(integ)
        add("nothing lost at saturation (audit == answered, no unseen error)", lost["discrepancy"], "= 0",
            lost["ok"], lost["summary"])
    return out


def nothing_lost(integ: dict) -> dict:
    load, audit = integ["load"], integ["audit"]
    statuses = load["statuses"]
    answered = sum(v for k, v in statuses.items() if not k.startswith("error"))  # complete answers read
    non_2xx = sum(v for k, v in statuses.items() if not k.startswith(("2", "error")))
    socket_errors = sum(v for k, v in statuses.items() if k.startswith("error"))
    kinds = audit.get("kinds", {})
    outcomes, decisions = kinds.get("outcome", 0), kinds.get("decision", 0)
    gone = audit.get("outcomes_client_gone", 0)
    errors_recorded = audit.get("outcomes_with_error_client_present", 0)
    served = integ.get("metrics", {}).get("gateway_requests", {})
    served_runs = sum(v for k, v in served.items() if "route=/v1/threads/runs" in k)
    usage_runs = sum(r.get("runs", 0) for r in (integ.get("usage") or {}).get("data", []))
    discrepancy = (
        abs(outcomes - answered) + abs(decisions - outcomes) + abs(served_runs - answered)
        + max(0, errors_recorded - non_2xx) + gone + load.get("unfinished", 0) + socket_errors
        + abs(usage_runs - audit.get("outcomes_with_usage", 0))
    )  # fmt: skip
    summary = (
        f"client sent {load['sent']}, read {answered} answers ({non_2xx} non-2xx, {socket_errors} socket errors, "
        f"{load.get('unfinished', 0)} unanswered); gateway counted {served_runs:.0f} in gateway_requests_total; "
        f"audit: {decisions} decision + {outcomes} outcome records ({gone} client-gone, {errors_recorded} with an "
        f"error); usage ledger: {usage_runs} runs settled = {audit.get('outcomes_with_usage', 0)} outcomes with "
        f"usage; audit verify exit {integ.get('audit_verify', {}).get('exit')}; gateway log warnings/errors: "
        f"{integ.get('log', {}).get('warning_or_error_events') or 'none'}"
    )
    ok = discrepancy == 0 and integ.get("audit_verify", {}).get("exit") == 0
    return {"ok": ok, "discrepancy": discrepancy, "summary": summary}


# --- markdown ----------------------------------------------------------------------------------------


def _ms(us: object, digits: int = 2) -> str:
    return f"{us / 1000:.{digits}f} ms" if isinstance(us, (int, float)) else "—"


def _num(v: object, fmt: str = "{:,.0f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) else "—"


def _ratio(v: object) -> str:
    return f"{v:.2f}×" if isinstance(v, (int, float)) else "—"


def markdown(results: dict) -> str:
    m = results["meta"]
    rows = summary_rows(results)
    lines = ["## Machine", ""]
    lines += [
        f"- {m['nproc']} × {m['cpu_model']} ({m['cpu_mhz']} MHz), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
        f"Debian {m['debian']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- {m['nginx']}; {m['wrk']}; LiteLLM {m['litellm']}; {m.get('py_spy') or 'py-spy not installed'}",
        f"- gateway at commit {m['git_commit'][:12]}{' (working tree of gateway/ modified)' if m['gateway_tree_dirty'] else ''}",
        f"- CPU layout (taskset): proxy under test on CPU {m['layout']['target']}; load generator, upstream "
        f"(canned nginx / simulator × {m.get('sim_workers', 1)}) and OTLP sink on CPU {m['layout']['client']}",
        *([f"- two-worker rows ({', '.join(sorted(TWO_CORES & set(results['targets'])))}): the server and the load "
           f"generator not pinned, so the server's two processes share both cores with the load generator, the "
           f"upstream staying on CPU {m['layout']['upstream']}"] if TWO_CORES & set(results["targets"]) else []),
        f"- started {m['started']}, took {m.get('duration_s', 0) / 60:.1f} min",
        "",
        "## Command",
        "",
        f"    {m['command']}",
        "",
        "## Side by side (ratios to direct)",
        "",
        "| | throughput req/s, 64 conn. (× direct) | serial client req/s | serial p50 / p99 | added p50 / p99 "
        "| stream TTFB added p50 / p99 | per-event delay added p50 / p99 | streams/s (× direct) | held open "
        "| RSS with them open | RSS per open stream |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        held = f"{r['held_open']}/{r['held_requested']}" if r["held_requested"] else "—"
        lines.append(
            f"| {LABELS[name]} | {_num(r['rps'])} ({_ratio(r['rps_ratio'])}) | {_num(r['serial_rps'])} "
            f"| {_ms(r['serial_p50_us'])} / {_ms(r['serial_p99_us'])} "
            f"| {_ms(r['added_p50_us'])} / {_ms(r['added_p99_us'])} "
            f"| {_ms(r['ttfb_added_p50_us'])} / {_ms(r['ttfb_added_p99_us'])} "
            f"| {_ms(r['event_added_p50_us'], 3)} / {_ms(r['event_added_p99_us'], 3)} "
            f"| {_num(r['streams_per_s'])} ({_ratio(r['streams_ratio'])}) | {held} "
            f"| {_num((r['rss_open_kib'] or 0) / MIB if r['rss_open_kib'] else None)} MiB "
            f"| {_num(r['rss_per_stream_kib'], '{:.1f}')} KiB |"
        )
    errors = {n: r["errors"] for n, r in rows.items() if r["errors"]}
    for name, errs in errors.items():
        for key, text in errs.items():
            lines.append(f"\n**{LABELS[name]}: {key.replace('_', ' ')}**: `{text}`")
    lines += ["", "## Targets (issue 15)", "", "| target | measured | limit | | note |", "|---|---|---|---|---|"]
    for e in results.get("evaluation", []):
        value = e["value"]
        shown = (
            f"{value:.2f}×" if ("throughput" in e["target"] or "≥ serial" in e["target"]) and isinstance(value, float)
            else f"{value:.0f} B" if "bytes" in e["target"] and value is not None
            else _num(value / MIB, "{:.0f}") + " MiB" if "1 GiB" in e["target"] and value is not None
            else f"{value / 1024:.1f} MiB" if "soak" in e["target"] and value is not None
            else str(int(value)) if "lost" in e["target"] and value is not None
            else _ms(value, 3)
        )  # fmt: skip
        verdict = "**met**" if e["met"] else "**not met**" if e["met"] is False else "not measured"
        lines.append(f"| {e['target']} | {shown} | {e['limit']} | {verdict} | {e['note']} |")
    lines += _rates(results) + _streams(results) + _ablation(results) + _soak(results) + _integrity(results)
    lines += _profile(results)
    lines += _conditions(results)
    return "\n".join(lines) + "\n"


def _rates(results: dict) -> list[str]:
    rates = sorted({r["rate_target"] for x in results["targets"].values()
                    for r in (_get(x, "nonstream", "rates") or [])})  # fmt: skip
    if not rates:
        return []
    lines = ["", "## Non-streaming at fixed rates (open loop, latency from the scheduled send: p50 / p99)", "",
             "| | " + " | ".join(f"{r:g}/s" for r in rates) + " |", "|---|" + "---|" * len(rates)]  # fmt: skip
    for name, x in results["targets"].items():
        by = {r["rate_target"]: r for r in (_get(x, "nonstream", "rates") or [])}
        cells = []
        for rate in rates:
            r = by.get(rate)
            if r is None:
                cells.append("overloaded below" if by else "—")
                continue
            bad = r["completed"] - r["ok"]
            over = r["achieved_rps"] < 0.95 * rate
            cells.append(f"{_ms(r['latency_us']['p50'])} / {_ms(r['latency_us']['p99'])}"
                         + (f" (overloaded: answered {r['achieved_rps']:.0f}/s, {r.get('unfinished', 0)} abandoned)"
                            if over else "")
                         + (f", {bad} non-2xx/errors" if bad else ""))  # fmt: skip
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return lines


def _streams(results: dict) -> list[str]:
    lines = ["", "## Streams", "",
             "Serial streams of the simulator's code-interpreter run (96 events, 1 ms apart): time to first byte "
             "from the client's send; per-event delay = client receipt − the simulator's send stamp (same clock).",
             "Proxies were measured alternating with direct requests (same moments, same machine state); the "
             "direct figures taken alongside each proxy are shown after the arrow.",
             "", "| | TTFB p50 / p99 (→ direct alongside) | event delay p50 / p99 / max (→ direct alongside p50 / p99) "
             "| events matched | stream throughput |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, x in results["targets"].items():
        s = x.get("stream") or {}
        ev = s.get("events") or {}
        d = ev.get("delay_us") or {}
        tp = s.get("throughput") or {}
        base = _get(s, "paired", "baseline", "ttfb_us") or {}
        bev = _get(s, "paired", "events", "baseline", "delay_us") or {}
        alongside = f" (→ {_ms(base.get('p50'))} / {_ms(base.get('p99'))})" if base else ""
        ev_alongside = f" (→ {_ms(bev.get('p50'), 3)} / {_ms(bev.get('p99'), 3)})" if bev else ""
        lines.append(
            f"| {LABELS[name]} | {_ms(_get(s, 'serial', 'ttfb_us', 'p50'))} / {_ms(_get(s, 'serial', 'ttfb_us', 'p99'))}"
            f"{alongside} | {_ms(d.get('p50'), 3)} / {_ms(d.get('p99'), 3)} / {_ms(d.get('max'), 1)}{ev_alongside} "
            f"| {ev.get('events', '—')} ({ev.get('events_without_stamp', '—')} unmatched) "
            f"| {_num(tp.get('streams_per_s'))} streams/s, {_num(tp.get('events_per_s'))} events/s |"
        )
    lines += ["", "Held-open streams (first event received, then 5 minutes of silence):", "",
              "| | opened | time to open | RSS before → with them open → after close | PSS with them open |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, x in results["targets"].items():
        h = _get(x, "stream", "hold")
        if not h:
            continue
        mb = lambda key, h=h: _num((_get(h, key, "rss_kib") or 0) / MIB, "{:.0f}")  # noqa: E731
        lines.append(
            f"| {LABELS[name]} | {_get(h, 'ready', 'open')}/{h['requested']} "
            f"{_get(h, 'ready', 'failures') or ''} | {_num(_get(h, 'ready', 'open_s'), '{:.1f}')} s "
            f"| {mb('memory_before')} → {mb('memory_open')} → {mb('memory_after_close')} MiB "
            f"| {_num((_get(h, 'memory_open', 'pss_kib') or 0) / MIB, '{:.0f}')} MiB |"
        )
    return lines


def _ablation(results: dict) -> list[str]:
    abl = _get(results, "gateway", "ablation", "variants")
    if not abl:
        return []
    full = abl[0]
    lines = ["", "## What each part of the gateway costs (one part off at a time, non-streaming)", "",
             f"Each variant in a fresh process, {full['rounds']} interleaved rounds: throughput is the best round "
             "(every round in brackets), serial latency the median round (`wrk -c1`).", "",
             "| gateway variant | saturation req/s | × full | serial p50 / p99 | 1 / throughput (one core) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for v in abl:
        rps = v["rps_best"]
        lines.append(f"| {v['variant']} | {rps:,.0f} ({', '.join(str(x) for x in v['rps_all'])}) "
                     f"| {rps / full['rps_best']:.2f}× | {_ms(v['serial_p50_us'])} / {_ms(v['serial_p99_us'])} "
                     f"| {1e6 / rps if rps else 0:,.0f} µs |")  # fmt: skip
    return lines


def _soak(results: dict) -> list[str]:
    soak = _get(results, "gateway", "soak")
    if not isinstance(soak, dict) or "checkpoints" not in soak:
        return ["", "## Soak", "", f"not run: {soak}"] if soak else []
    g = soak_growth(soak)
    cps = soak["checkpoints"]
    lines = ["", f"## Soak: {soak['requests']:,} requests through the gateway", "",
             f"`state.max_owned_objects: {soak['max_owned_objects']}` so that the state the gateway keeps by design "
             "(ownership of threads and runs, settled-run markers) is full after a fraction of the soak; growth is "
             "judged from the checkpoint after 30 % of the requests to the end.", "",
             "| requests | " + " | ".join(f"{c['requests']:,}" for c in cps) + " |",
             "|---|" + "---|" * len(cps),
             "| RSS MiB | " + " | ".join(f"{c['rss_kib'] / MIB:.1f}" for c in cps) + " |"]  # fmt: skip
    if g:
        lines += ["", f"Growth from {g['from_requests']:,} to {g['to_requests']:,} requests: "
                  f"{g['growth_kib'] / 1024:+.1f} MiB (slope {g['slope_bytes_per_request']:+.1f} bytes/request). "
                  f"Until the retention was full: {g['retained_bytes_per_request_until_full']:.0f} bytes/request "
                  f"(at the default `max_owned_objects: 1000000` that retention alone would reach roughly "
                  f"{g['retained_bytes_per_request_until_full'] * 1e6 / 2**30:.1f} GiB).",
                  f"Answers: {soak['statuses']}; audit: {soak['audit'].get('kinds')}."]  # fmt: skip
    return lines


def _integrity(results: dict) -> list[str]:
    integ = _get(results, "gateway", "integrity")
    if not isinstance(integ, dict) or "load" not in integ:
        return ["", "## Nothing lost under load", "", f"not run: {integ}"] if integ else []
    lost = nothing_lost(integ)
    load = integ["load"]
    return [
        "", f"## Nothing lost under load: {results['plan']['integrity_s']:g} s at saturation "
        f"({load['concurrency']} connections, closed loop, {load['achieved_rps']:.0f} req/s)", "",
        f"- {lost['summary']}",
        f"- audit outcomes by upstream status / run status: {integ['audit'].get('outcomes_by_upstream_status_and_run_status')}",
        f"- audit verify: `{integ['audit_verify']['output'][-300:]}`",
        f"- metrics: `gateway_requests_total` {integ['metrics'].get('gateway_requests')}; "
        f"`gateway_audit_records_total` {integ['metrics'].get('gateway_audit_records')}",
        f"- spans received by the OTLP sink: {integ.get('spans_exported')}",
        f"- gateway exit codes: {integ.get('exit_codes')}; log levels: {integ.get('log', {}).get('levels')}",
        f"- verdict: {'nothing lost' if lost['ok'] else 'DISCREPANCY, see above'}",
    ]


def _profile(results: dict) -> list[str]:
    prof = _get(results, "gateway", "profile")
    if not isinstance(prof, dict):
        return []
    lines = ["", "## Where the gateway's CPU goes (py-spy --gil, 150 Hz: samples of whichever thread holds the GIL)"]
    for kind, title in (("run", "non-streaming saturation"), ("stream", "stream throughput")):
        p = prof.get(kind)
        if not isinstance(p, dict) or "loop" not in p:
            if p:
                lines += ["", f"{title}: {p.get('error', p)}"]
            continue
        load = p.get("load", {})
        rate = load.get("rps") or load.get("streams_per_s")
        lines += ["", f"### {title} ({rate:.0f}/s under the profiler; {p['samples']} samples: the event-loop "
                  f"thread held the GIL in {p['loop_thread_share']} % of them, other threads in "
                  f"{100 - (p['loop_thread_share'] or 0):.1f} %)", "",
                  "By stage, over all samples (the event-loop thread's charged to the innermost `gateway/` frame "
                  "on its stack; the OpenTelemetry exporter thread's to tracing):", "",
                  "| % of all samples | stage |", "|---|---|",
                  *[f"| {v} | {k} |" for k, v in p.get("stages", [])], "",
                  "Event-loop thread, by innermost `gateway/` frame (what gateway code the time was spent for; "
                  "`serve (gateway/serve.py)` = aiohttp/uvloop work outside any gateway function: HTTP parsing, "
                  "connection handling, the event loop):", "",
                  "| % of loop samples | frame |", "|---|---|"]  # fmt: skip
        lines += [f"| {v} | `{k}` |" for k, v in p["loop"]["innermost_gateway_frame"][:18]]
        lines += ["", "The same, by file:", "", "| % of loop samples | file |", "|---|---|"]
        lines += [f"| {v} | `{k}` |" for k, v in p["loop"]["innermost_gateway_file"][:14]]
        lines += ["", "Event-loop thread, self time (leaf functions):", "", "| % | function |", "|---|---|"]
        lines += [f"| {v} | `{k}` |" for k, v in p["loop"]["self"][:18]]
        other = p.get("other_threads")
        if other:
            lines += ["", f"Other threads ({100 - (p['loop_thread_share'] or 0):.1f} % of samples), inclusive:", "",
                      "| % of their samples | function |", "|---|---|"]  # fmt: skip
            lines += [f"| {v} | `{k}` |" for k, v in other["inclusive"][:12]]
    return lines


def _conditions(results: dict) -> list[str]:
    lines = ["", "## Conditions of each phase", "",
             "CPU in cores: `ours` is this harness and everything it started; `foreign` is anything else on the "
             "machine at the time (other test runs share it). Phases wait up to "
             f"{results['plan']['quiet_wait']:g} s for foreign load ≤ 0.35 cores before starting.", "",
             "| target | phase | ours | foreign | waited for quiet |", "|---|---|---|---|---|"]  # fmt: skip

    def row(target: str, phase: str, r: object) -> None:
        info = _get(r, "phase")
        if isinstance(info, dict) and info.get("cpu"):
            quiet = info.get("quiet") or {}
            lines.append(f"| {target} | {phase} | {info['cpu']['ours_cores']} | {info['cpu']['foreign_cores']} "
                         f"| {quiet.get('waited_s', 0)} s |")  # fmt: skip

    for name, x in results["targets"].items():
        ns, st = x.get("nonstream") or {}, x.get("stream") or {}
        row(name, "serial (wrk)", ns.get("serial"))
        row(name, "serial paired with direct", ns.get("paired"))
        row(name, "saturation", ns.get("saturation"))
        for r in ns.get("rates") or []:
            row(name, f"rate {r['rate_target']:g}/s", r)
        row(name, "streams serial" + (" paired with direct" if st.get("paired") else ""), st.get("serial"))
        row(name, "stream throughput", st.get("throughput"))
    row("gateway", "saturation (integrity)", _get(results, "gateway", "integrity", "load"))
    return lines
