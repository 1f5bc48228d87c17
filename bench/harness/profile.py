"""py-spy's raw (collapsed) stacks → where the gateway's CPU goes."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+?)(?::\d+)?\)$")


def _key(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    # Shorten site-packages and stdlib paths to "package/module.py".
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3":
                path = "stdlib:" + path.split("/", 1)[1]
            break
    return f"{m['func']} ({path})"


def _module(frame_key: str) -> str:
    inner = frame_key.rsplit("(", 1)[-1].rstrip(")")
    if inner.startswith("gateway/"):
        return inner
    return inner.split("/", 1)[0] if "/" in inner else inner


STAGES = (
    # (stage, files of the innermost gateway/ frame)
    ("tracing (spans, attributes, events)", ("gateway/telemetry/tracing.py", "gateway/telemetry/run_spans.py")),
    ("limits and state (admission, rate windows, token buckets)", ("gateway/state/", "gateway/admit.py",
                                                                    "gateway/settle.py", "gateway/ownership.py")),
    ("run log line (structlog)", ("gateway/record.py", "gateway/logs.py")),
    ("audit records", ("gateway/telemetry/audit",)),
    ("Prometheus metrics", ("gateway/telemetry/metrics.py", "gateway/telemetry/labels.py")),
    ("parse, validate, policy", ("gateway/validate.py", "gateway/openai_types.py", "gateway/openai_parts.py",
                                 "gateway/policy", "gateway/enforce.py", "gateway/facts.py", "gateway/schema_errors.py")),
    ("upstream client (aiohttp ClientSession, headers)", ("gateway/upstream.py",)),
    ("relay, SSE parsing, run tracking", ("gateway/relay.py", "gateway/sse.py", "gateway/runs.py")),
    ("aiohttp server and event loop (no gateway frame)", ("gateway/serve.py", "gateway/__main__.py")),
)  # fmt: skip


def stage_of(innermost: str) -> str:
    path = innermost.rsplit("(", 1)[-1].rstrip(")")
    for stage, prefixes in STAGES:
        if path.startswith(prefixes):
            return stage
    return "other gateway code (middlewares, handler)" if path.startswith("gateway/") else "outside gateway/ code"


def analyse(raw: Path, top: int = 25) -> dict:
    """Self and inclusive shares of samples, per function and per module; threads split apart.

    With `py-spy record --threads`, each stack starts with a `thread (0x…)` frame: the event
    loop's thread is the one whose stacks pass through `run_app`/`run_forever`.
    """
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    by_thread: Counter[str] = Counter()
    loop_threads: set[str] = set()
    for frames, n in stacks:
        thread = frames[0] if frames and frames[0].startswith(("thread ", "process ")) else "?"
        by_thread[thread] += n
        if any("run_app" in f or "run_forever" in f for f in frames):
            loop_threads.add(thread)

    def tally(selected: list[tuple[list[str], int]]) -> dict:
        total_sel = sum(n for _, n in selected) or 1
        self_c: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        mods: Counter[str] = Counter()
        gw_self: Counter[str] = Counter()
        for frames, n in selected:
            keys = [_key(f) for f in frames if not f.startswith(("thread ", "process "))]
            if not keys:
                continue
            self_c[keys[-1]] += n
            for k in set(keys):
                incl[k] += n
            for m in {_module(k) for k in keys}:
                mods[m] += n
            # Charge each sample to the innermost gateway/ frame: "what gateway code caused this".
            gw = next((k for k in reversed(keys) if "(gateway/" in k), None)
            gw_self[gw or "(outside gateway/ code)"] += n

        def pct(counter: Counter[str], limit: int = top) -> list[tuple[str, float]]:
            return [(k, round(100 * v / total_sel, 1)) for k, v in counter.most_common(limit)]

        stages: Counter[str] = Counter()
        for k, v in gw_self.items():
            stages[stage_of(k)] += v
        by_file: Counter[str] = Counter()
        for k, v in gw_self.items():
            by_file[k.rsplit("(", 1)[-1].rstrip(")") if "(gateway/" in k else k] += v
        return {
            "stages_raw": dict(stages),
            "innermost_gateway_file": pct(by_file),
            "samples": total_sel,
            "self": pct(self_c),
            "inclusive": pct(incl, top * 2),
            "gateway_modules": [(k, v) for k, v in pct(mods, 200) if k.startswith("gateway/")][:top],
            "innermost_gateway_frame": pct(gw_self),
        }

    loop = [(f, n) for f, n in stacks if (f[0] if f else "?") in loop_threads] if loop_threads else stacks
    others = [(f, n) for f, n in stacks if (f[0] if f else "?") not in loop_threads] if loop_threads else []
    loop_t, other_t = tally(loop), (tally(others) if others else None)
    # Pipeline stages over all GIL samples: the loop thread's by innermost frame; other threads are the
    # OpenTelemetry batch exporter (encoding spans), the audit writer, or anything else by name.
    stages: Counter[str] = Counter(loop_t["stages_raw"])
    for frames, n in others:
        joined = ";".join(frames)
        if "BatchProcessor" in joined or "trace_encoder" in joined or "SpanExporter" in joined:
            stages["tracing (spans, attributes, events)"] += n
        elif "gateway/telemetry/audit" in joined:
            stages["audit records"] += n
        else:
            stages["executor threads (asyncio.to_thread hand-offs: audit writes, limits expiry)"] += n
    return {
        "stages": [(k, round(100 * v / total, 1)) for k, v in stages.most_common()] if total else [],
        "samples": total,
        "threads": {t: n for t, n in by_thread.most_common()},
        "loop_thread_share": round(100 * sum(n for _, n in loop) / total, 1) if total else None,
        "loop": loop_t,
        "other_threads": other_t,
    }
