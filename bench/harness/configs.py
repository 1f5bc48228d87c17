"""Everything the benchmark generates into its temporary directory: request bodies, the canned run
object, and the configs of nginx (canned upstream and reverse proxy), the gateway and LiteLLM."""

from __future__ import annotations

import json
from pathlib import Path

ASSISTANT_ID = "asst_bench"  # exists in every simulator process (bench/sim_upstream.py)
TENANT = "bench"
MODEL = "gpt-4o"

# The run call every workload sends (streams add "stream": true). It passes the gateway's policy
# untouched (caps within the limits, so the body is forwarded byte for byte, as most will be).
RUN_BODY = {
    "assistant_id": ASSISTANT_ID,
    "model": MODEL,
    "tools": [{"type": "code_interpreter"}],
    "temperature": 0.7,
    "max_prompt_tokens": 16000,
    "max_completion_tokens": 1000,
    "metadata": {"cost_center": "cc-bench", "request_origin": "bench"},
    "thread": {
        "messages": [
            {
                "role": "user",
                "content": "Load the attached quarterly figures, compute the growth per region and plot it.",
            }
        ]
    },
}


def bodies(tmp: Path) -> dict[str, Path]:
    out = {}
    for name, extra in (("run", {}), ("stream", {"stream": True})):
        path = tmp / f"body-{name}.json"
        path.write_bytes(json.dumps({**RUN_BODY, **extra}, separators=(",", ":")).encode())
        out[name] = path
    return out


def canned_run() -> str:
    """A completed run object as the API returns it (about 1 kB), ids unique per request via nginx's
    `$request_id`, so the gateway claims, binds and settles a new run every time."""
    run = {
        "id": "run_RID",
        "object": "thread.run",
        "created_at": 1764000000,
        "assistant_id": ASSISTANT_ID,
        "thread_id": "thread_RID",
        "status": "completed",
        "started_at": 1764000001,
        "expires_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": 1764000004,
        "required_action": None,
        "last_error": None,
        "model": MODEL,
        "instructions": "You are a data analyst. Use the code interpreter to answer with charts.",
        "tools": [{"type": "code_interpreter"}],
        "tool_resources": {"code_interpreter": {"file_ids": []}},
        "metadata": {"cost_center": "cc-bench", "request_origin": "bench"},
        "temperature": 0.7,
        "top_p": 1.0,
        "reasoning_effort": None,
        "max_completion_tokens": 1000,
        "max_prompt_tokens": 16000,
        "truncation_strategy": {"type": "auto", "last_messages": None},
        "incomplete_details": None,
        "usage": {"prompt_tokens": 1412, "completion_tokens": 318, "total_tokens": 1730,
                  "prompt_token_details": {"cached_tokens": 0}},
        "response_format": "auto",
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }  # fmt: skip
    return json.dumps(run, separators=(",", ":")).replace("RID", "$request_id")


def _nginx_conf(tmp: Path, name: str, servers: str, *, access_log: bool, workers: int = 1) -> Path:
    """An nginx.conf in its own folder: one worker, as the gateway runs one process (or `workers`, as
    the gateway's `--workers`); `servers` inside `http`."""
    base = tmp / f"nginx-{name}"
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 30000; multi_accept on; }}
http {{
    access_log {f'{base}/access.log' if access_log else 'off'};
    client_body_temp_path {base}/body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    uwsgi_temp_path {base}/uwsgi;
    scgi_temp_path {base}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
{servers}
}}
""")
    return conf


def nginx_canned(tmp: Path, port: int) -> Path:
    """The non-streaming upstream: a canned run object for POST /v1/threads/runs, nothing else."""
    return _nginx_conf(tmp, "canned", access_log=False, servers=f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/threads/runs {{
            default_type application/json;
            add_header x-request-id req_$request_id;
            add_header openai-version 2020-10-01;
            add_header openai-processing-ms 412;
            return 200 '{canned_run()}';
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error":{{"message":"Invalid URL","type":"invalid_request_error","param":null,"code":null}}}}';
        }}
    }}""")


def nginx_proxy(tmp: Path, port: int, upstream_port: int, workers: int = 1) -> Path:
    """nginx as a plain reverse proxy: keep-alive upstream pool, no buffering (streams flow); its
    workers share one listening socket, nginx's default."""
    return _nginx_conf(tmp, f"proxy-{upstream_port}-w{workers}", access_log=True, workers=workers, servers=f"""
    upstream up {{
        server 127.0.0.1:{upstream_port};
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}""")


ALL_FEATURES = frozenset({"tenants", "policy", "limits", "tracing", "audit"})
# Extras a variant may add: "run_log" (log_level debug: a run_call line per call), "sampled" (tracing
# keeps one trace in ten, as a busy deployment would: OTEL_TRACES_SAMPLER=parentbased_traceidratio),
# "redis" (state on the redis-server at `redis_url`), "facade" (the Assistants API served on the
# upstream's Responses API, `upstream.protocol: responses`, with the bench's assistant as a
# platform-defined one), "workers2" (`listen.workers: 2`: needs "redis").


def gateway_config(
    tmp: Path,
    name: str,
    port: int,
    upstream_port: int,
    audit_dir: Path,
    max_owned: int,
    features: frozenset[str] = ALL_FEATURES,
    redis_url: str | None = None,
) -> Path:
    """The full pipeline: a tenant with a policy, limits (generous), memory state, tracing (env),
    metrics, the admin API, and the hash-chained audit log to a file. `features` turns parts off for
    the ablation runs (metrics cannot be turned off)."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    tenants = "tenants" in features
    policy = tenants and "policy" in features
    limits = tenants and "limits" in features
    tokens = policy  # token limits need the policy's caps
    parts = [
        f"""
listen:
  host: 127.0.0.1
  port: {port}
  drain_timeout_s: 5
  workers: {2 if 'workers2' in features else 1}
upstream:
  base_url: http://127.0.0.1:{upstream_port}/v1
  protocol: {'responses' if 'facade' in features else 'assistants'}
  {'api_key: ${BENCH_UPSTREAM_KEY}' if tenants else '# pass-through mode: the caller key goes upstream'}
  pool_size: 12000           # 5,000 held-open streams need as many upstream connections
  read_timeout_s: 900        # held-open streams wait minutes between events
"""
    ]
    if tenants:
        parts.append(
            f"""
tenants:
  {TENANT}:
    keys: ["${{BENCH_TENANT_KEY}}"]
    {f'policy: {TENANT}' if policy else '# no policy'}
    owns: [{ASSISTANT_ID}]  # made before the gateway (the upstream's own): declared the tenant's
"""
        )
    if policy:
        parts.append(
            f"""
policies:
  {TENANT}:
    models: {{allow: ["gpt-4o", "gpt-4o-2024-*", "gpt-4o-mini*"], deny: ["*-preview"]}}
    tools:
      allowed_types: [code_interpreter, file_search, function]
      functions: ["search_*", "fetch_document"]
      max_tools: 8
      max_file_search_results: 20
    tokens:
      max_prompt_tokens: {{max: 32000, action: clamp, default: 16000}}
      max_completion_tokens: {{max: 4000, action: clamp, default: 1000}}
    sampling:
      temperature: {{min: 0, max: 1.5}}
    content:
      max_messages: 32
      max_text_chars: 100000
      allow_images: false
      max_attachments: 5
    metadata:
      required: [cost_center]
      allowed_values: {{cost_center: [cc-bench, cc-other]}}
"""
        )
    if limits:
        token_limits = (
            """
      tokens_per_minute: 1000000000000
      tokens_per_day: 1000000000000000
      tokens_per_month: 1000000000000000"""
            if tokens
            else ""
        )
        parts.append(
            f"""
limits:
  tenants:
    {TENANT}:                       # generous: never reached, but every check runs
      requests_per_minute: 100000000
      concurrent_runs: 1000000
      open_streams: 1000000{token_limits}
      per_key: {{requests_per_minute: 100000000, concurrent_runs: 1000000}}
"""
        )
    backend = f"backend: redis\n  url: {redis_url}" if "redis" in features and redis_url else "backend: memory"
    parts.append(
        f"""
state:
  {backend}
  max_owned_objects: {max_owned}
"""
    )
    if "facade" in features:
        parts.append(
            f"""
assistants:
  {ASSISTANT_ID}: {{model: {MODEL}, tools: [{{type: code_interpreter}}]}}
"""
        )
    if tenants:
        parts.append(
            """
admin:
  keys: ["${BENCH_ADMIN_KEY}"]
"""
        )
    parts.append(
        f"""
telemetry:
  log_level: {'debug' if 'run_log' in features else 'info'}
  log_format: json
  tracing: {{enabled: "{'on' if 'tracing' in features else 'off'}"}}
audit:
  enabled: {'true' if 'audit' in features else 'false'}
  sink: file
  path: {audit_dir}/audit.jsonl
  max_bytes: 268435456
  backups: 20
"""
    )
    path = tmp / f"gateway-{name}.yaml"
    path.write_text("".join(parts))
    return path


def litellm_config(tmp: Path, name: str, upstream_port: int) -> Path:
    """LiteLLM proxy's pass-through endpoint for the same path, with its own key check (auth: true)."""
    path = tmp / f"litellm-{name}.yaml"
    path.write_text(
        f"""
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  pass_through_endpoints:
    - path: "/v1/threads/runs"
      target: "http://127.0.0.1:{upstream_port}/v1/threads/runs"
      forward_headers: true
      auth: true
"""
    )
    return path
