"""The systems under test: started pointed at an upstream, stopped afterwards."""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import configs
from .measure import BENCH, REPO, Layout
from .procs import Proc, free_port, wait_http, wait_port

# The gateway's rows: `gateway` is the production setting (every part of the pipeline, one trace in
# ten sampled); the others change one thing.
VARIANTS = {
    "gateway": configs.ALL_FEATURES | {"sampled"},
    "gateway-all-spans": configs.ALL_FEATURES,
    "gateway-redis": configs.ALL_FEATURES | {"sampled", "redis"},
    "gateway-2w": configs.ALL_FEATURES | {"sampled", "redis", "workers2"},  # several workers need Redis
}
TARGETS = ("direct", *VARIANTS, "nginx", "nginx-2w", "litellm", "bare")
# Two worker processes against nginx's `worker_processes 2`: not pinned. This machine has two cores,
# so the server's two processes share them with the load generator and the upstream (which stays on
# its core); the scheduler decides who runs where.
TWO_CORES = frozenset({"gateway-2w", "nginx-2w"})
LABELS = {
    "direct": "direct (no proxy)",
    "gateway": "gateway (full pipeline, 1 trace in 10 sampled)",
    "gateway-all-spans": "gateway (full pipeline, every span sampled)",
    "gateway-redis": "gateway (full pipeline, Redis state)",
    "gateway-2w": "gateway, 2 workers (full pipeline, Redis state; both cores shared)",
    "nginx": "nginx reverse proxy",
    "nginx-2w": "nginx, 2 workers (both cores shared)",
    "litellm": "LiteLLM proxy (pass-through)",
    "bare": "bare aiohttp+uvloop proxy",
}
BETA = "OpenAI-Beta: assistants=v2"


@dataclass
class Keys:
    tenant: str = field(default_factory=lambda: "sk-bench-tenant-" + secrets.token_hex(16))
    upstream: str = field(default_factory=lambda: "sk-bench-upstream-" + secrets.token_hex(16))
    admin: str = field(default_factory=lambda: "sk-bench-admin-" + secrets.token_hex(16))
    litellm: str = field(default_factory=lambda: "sk-bench-litellm-" + secrets.token_hex(24))
    direct: str = "sk-bench-direct"


@dataclass
class Env:
    tmp: Path
    logs: Path
    layout: Layout
    keys: Keys
    sink_port: int
    litellm_bin: Path | None
    max_owned: int
    redis_url: str | None = None


@dataclass
class Running:
    name: str
    url: str  # POST here
    headers: list[str]
    procs: list[Proc]
    mem_pid: int | None  # root of the process tree whose memory is the target's
    port: int | None = None
    audit_dir: Path | None = None

    @property
    def origin(self) -> str:
        return self.url.split("/v1/")[0]

    def stop(self) -> list[int | None]:
        return [proc.stop() for proc in self.procs]


def gateway_env(env: Env, features: frozenset[str] = configs.ALL_FEATURES) -> dict[str, str]:
    sampled = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    return {
        "PYTHONPATH": str(REPO),
        "BENCH_TENANT_KEY": env.keys.tenant,
        "BENCH_UPSTREAM_KEY": env.keys.upstream,
        "BENCH_ADMIN_KEY": env.keys.admin,
        # Tracing on, every span sampled, the SDK's BatchSpanProcessor with its default settings,
        # exported over OTLP/HTTP (protobuf) to bench/otlp_sink.py.
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{env.sink_port}/v1/traces",
        "OTEL_SERVICE_NAME": "assistants-gateway-bench",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        **(sampled if "sampled" in features else {}),
    }


def start(
    name: str,
    env: Env,
    upstream_port: int,
    upstream_pid: int | None,
    tag: str,
    features: frozenset[str] = VARIANTS["gateway"],
) -> Running:
    direct_headers = [f"Authorization: Bearer {env.keys.direct}", BETA]
    log = env.logs / f"{name}-{tag}.log"
    if name == "direct":
        return Running(name, f"http://127.0.0.1:{upstream_port}/v1/threads/runs", direct_headers, [], upstream_pid)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/threads/runs"
    cpus = None if name in TWO_CORES else env.layout.target
    if name in VARIANTS:
        features = features if name == "gateway" else frozenset(VARIANTS[name])
        if "redis" in features and env.redis_url:  # each start a clean state, as a fresh process is on memory
            subprocess.run(["redis-cli", "-u", env.redis_url, "FLUSHALL"], check=True, capture_output=True)
        audit_dir = env.tmp / f"audit-{name}-{tag}"
        config = configs.gateway_config(env.tmp, f"{name}-{tag}", port, upstream_port, audit_dir, env.max_owned, features,
                                        env.redis_url)  # fmt: skip
        proc = Proc("gateway", [sys.executable, "-m", "gateway", "serve", "--config", str(config)], log,
                    cpus=cpus, env=gateway_env(env, features), cwd=REPO).start()  # fmt: skip
        wait_http(f"http://127.0.0.1:{port}/readyz", 60, proc)
        headers = [f"Authorization: Bearer {env.keys.tenant}", BETA] if "tenants" in features else direct_headers
        return Running(name, url, headers, [proc], proc.pid, port, audit_dir)
    if name in ("nginx", "nginx-2w"):
        conf = configs.nginx_proxy(env.tmp, port, upstream_port, workers=2 if name == "nginx-2w" else 1)
        proc = Proc("nginx", ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")],
                    log, cpus=cpus).start()  # fmt: skip
        wait_port(port, 20, proc)
        return Running(name, url, direct_headers, [proc], proc.pid, port)
    if name == "bare":
        proc = Proc("bare", [sys.executable, str(BENCH / "bare_proxy.py"), "--port", str(port),
                             "--upstream", f"http://127.0.0.1:{upstream_port}"],
                    log, cpus=env.layout.target, cwd=REPO).start()  # fmt: skip
        wait_port(port, 30, proc)
        return Running(name, url, direct_headers, [proc], proc.pid, port)
    if name == "litellm":
        if env.litellm_bin is None:
            raise RuntimeError("LiteLLM is not installed (see --setup)")
        config = configs.litellm_config(env.tmp, tag, upstream_port)
        proc = Proc(
            "litellm",
            [str(env.litellm_bin), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            log,
            cpus=env.layout.target,
            cwd=env.tmp,
            env={
                "LITELLM_MASTER_KEY": env.keys.litellm,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch of the model price list
                # Its upstream pool (500 per host by default) as large as the gateway's pool_size.
                "AIOHTTP_CONNECTOR_LIMIT": "12000",
                "AIOHTTP_CONNECTOR_LIMIT_PER_HOST": "12000",
                "PYTHONPATH": "",
            },
        ).start()
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, proc)
        return Running(name, url, [f"Authorization: Bearer {env.keys.litellm}", BETA], [proc], proc.pid, port)
    raise ValueError(name)
