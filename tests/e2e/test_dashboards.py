"""dashboards/: the Grafana dashboard and the Prometheus alert rules, checked against the real thing.

promtool checks and unit-tests the rules; then a real Prometheus (Debian's `prometheus`) scrapes a real
gateway every second while a workload goes through it with the official SDK, and every panel query of
the dashboard must be valid and show something other than 0 (but the few listed below), and every alert
rule must evaluate cleanly. The gateway keeps its state in a real Redis, which the workload takes down
for a moment.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from gateway.telemetry.metrics import Metrics
from tests.e2e.dashboards_workload import ENV, workload, write_config
from tests.redis_server import RedisServer
from tests.support import TEAM_KEY, free_port, team_tenant

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # promtool, a real Prometheus, a redis-server

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
DASHBOARD = DASHBOARDS / "assistants-gateway.json"
ALERTS = DASHBOARDS / "alerts.yaml"
ALERT_TESTS = DASHBOARDS / "alerts_test.yaml"
JOB = "assistants-gateway"  # the scrape job name alerts.yaml expects
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    not os.environ.get("CI") and not (PROMETHEUS and PROMTOOL),
    reason="needs Debian's prometheus and promtool (apt-get install prometheus); always runs in CI",
)

# Panels that cannot show anything yet, by title, and why: no series, or only the zeros of series the
# gateway exports from the start. Every other panel must show something other than 0. None today.
EXPECTED_EMPTY: dict[str, str] = {}
# Panels whose right value after the workload is 0, and why.
ZERO = {
    "Active streams": "no stream is open once the workload is done",
    "Active streams by tenant": "no stream is open once the workload is done",
    "Audit write failures": "must stay 0: every audit record of the workload is written (stdout sink)",
    "Replicas off the shared state": "Redis is back once the workload is done",
    "Streams cut at drain": "must stay 0: the gateway is not stopped during the workload",
}
# Grafana's values for the checks: All is `.*` (the variables' allValue), intervals a minute.
VARIABLES = {
    "datasource": "prometheus",
    "job": ".*",
    "tenant": ".*",
    "model": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
}
# The variable each label must be filtered by, wherever a metric has that label.
FILTERS = {
    "job": 'job=~"$job"',
    "tenant": 'tenant=~"$tenant"',
    "gateway_tenant": 'gateway_tenant=~"$tenant"',
    "model": 'model=~"$model"',
    "gen_ai_response_model": 'gen_ai_response_model=~"$model"',
}
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")


def series_labels() -> dict[str, set[str]]:
    """Every series name the gateway exports (as Prometheus stores it) → its labels."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(metric._labelnames)
            for suffix in suffixes[metric._type]:  # (a family may be two metrics whose labels differ)
                series.setdefault(metric._name + suffix, set()).update(labels | ({"le"} if suffix == "_bucket" else set()))
    return series


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def data_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def substitute(expr: str) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: VARIABLES[m.group(1) or m.group(2)], expr)


def metric_problems(expr: str, known: dict[str, set[str]], filtered: bool) -> list[str]:
    """Unknown metric names, bare names, and (for panels) labels not filtered by their variable."""
    problems = []
    for name, matchers in SELECTOR.findall(expr):
        if name not in known and name != "up":
            problems.append(f"{name}: not a series the gateway exports")
            continue
        labels = known.get(name, {"job", "instance"}) | {"job"}
        for label, wanted in FILTERS.items():
            if filtered and label in labels and wanted not in matchers:
                problems.append(f"{name}{{{matchers}}}: missing {wanted}")
    if filtered:  # a bare name would escape the filters
        bare = [name for name in known if re.search(rf"\b{name}\b(?!\s*\{{)", expr)]
        problems += [f"{name}: without a selector" for name in bare]
    return problems


def test_dashboard_is_importable_and_every_query_is_filtered():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 38 and dashboard["uid"] and dashboard["title"]
    assert dashboard["id"] is None  # importable: Grafana assigns the id
    assert [i["pluginId"] for i in dashboard["__inputs"] if i["type"] == "datasource"] == ["prometheus"]
    found = variables(dashboard)
    assert found["datasource"]["type"] == "datasource" and found["datasource"]["query"] == "prometheus"
    for name in ("job", "tenant", "model"):
        variable = found[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["multi"] and variable["includeAll"], name
        assert variable["definition"].startswith("label_values("), name
    assert found["tenant"]["allValue"] == found["model"]["allValue"] == ".*"

    panels, known, cells = data_panels(dashboard), series_labels(), set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert len({panel["title"] for panel in panels}) == len(panels)
    assert set(EXPECTED_EMPTY) | set(ZERO) <= {panel["title"] for panel in panels}
    problems, used = [], set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            problems += [f"{panel['title']}: {p}" for p in metric_problems(target["expr"], known, filtered=True)]
            used |= {name for name, _ in SELECTOR.findall(target["expr"])}
    assert not problems, "\n".join(problems)
    families = {name.removesuffix("_bucket").removesuffix("_total") for name in used}
    exported = {
        name.removesuffix("_bucket").removesuffix("_total") for name in known if not name.endswith(("_sum", "_count"))
    }
    assert exported <= families, f"metrics with no panel: {sorted(exported - families)}"


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_alert_rules_are_complete():
    rules, known = alert_rules(), series_labels()
    assert {"GatewayDown", "UpstreamErrorRateHigh", "PolicyDenialSpike", "AuditWriteFailures",
            "BrokenStreamsHigh", "BudgetNearlySpent", "StateBackendDown"} <= {rule["alert"] for rule in rules}  # fmt: skip
    for rule in rules:
        assert "for" in rule and rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert not metric_problems(rule["expr"], known, filtered=False), rule["alert"]
    down = next(rule for rule in rules if rule["alert"] == "GatewayDown")
    assert down["expr"] == f'up{{job="{JOB}"}} == 0'


@needs_prometheus
def test_promtool_checks_and_unit_tests_the_rules():
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        done = subprocess.run([PROMTOOL or "promtool", *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


class Prometheus:
    """A real Prometheus in a temp dir, scraping one target every second, with alerts.yaml loaded."""

    def __init__(self, root: Path, target: str) -> None:
        root.mkdir()
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = root / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS or "prometheus",
                    f"--config.file={self.root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


class PrometheusAPI:
    def __init__(self, session: aiohttp.ClientSession, prometheus: Prometheus) -> None:
        self.session, self.prometheus = session, prometheus

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with self.session.get(self.prometheus.url + path, params=params) as response:
            return await response.json()

    async def query(self, expr: str) -> dict[str, Any]:
        return await self.get("/api/v1/query", query=expr)

    async def until(self, what: str, check: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert self.prometheus.process and self.prometheus.process.poll() is None, self.prometheus.tail()
            try:
                if result := await check():
                    return result
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"Prometheus: timed out waiting for {what}\n{self.prometheus.tail()}"
            await asyncio.sleep(0.1)

    async def scrapes(self) -> int:
        result = (await self.query(f'count_over_time(up{{job="{JOB}"}}[1h])'))["data"]["result"]
        return int(result[0]["value"][1]) if result else 0

    async def scraped(self, more: int) -> None:
        """Wait until `more` scrapes beyond now have landed (so one of them started after this call)."""
        seen = await self.scrapes()
        await self.until(f"{more} scrapes", lambda: self._at_least(seen + more))

    async def _at_least(self, count: int) -> bool:
        return await self.scrapes() >= count

    async def ready(self) -> bool:
        async with self.session.get(self.prometheus.url + "/-/ready") as response:
            return response.status == 200


def values(result: dict[str, Any]) -> list[float]:
    data = result["data"]
    if data["resultType"] == "scalar":
        return [float(data["result"][1])]
    return [float(sample["value"][1]) for sample in data["result"]]


@needs_prometheus
async def test_every_panel_and_alert_on_a_real_prometheus(
    make_gateway, simulator, redis_server: RedisServer, tmp_path, monkeypatch
):
    for name, value in ENV.items():  # a reload reads the file with the process environment
        monkeypatch.setenv(name, value)
    (tmp_path / "gateway").mkdir()  # its own folder: the gateway watches the config file's folder
    config = tmp_path / "gateway" / "gateway.yaml"
    write_config(config, str(simulator.make_url("/v1")), redis_server.url)
    gateway = await make_gateway(config_file=config, env=ENV)
    prometheus = Prometheus(tmp_path / "prometheus", target=f"127.0.0.1:{gateway.server.port}")
    prometheus.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            api = PrometheusAPI(session, prometheus)
            await workload(gateway, config, redis_server)  # first round, while Prometheus starts: every series exists
            await api.until("ready", api.ready)
            await api.scraped(2)
            await workload(gateway, config, redis_server)  # second round: every counter moves, every rate() > 0
            await api.scraped(2)
            assert values(await api.query(f'up{{job="{JOB}"}}')) == [1.0]
            await check_variables(api)
            await check_panels(api)
            await check_alerts(api)
    finally:
        prometheus.stop()


async def check_variables(api: PrometheusAPI) -> None:
    for name, variable in variables(load_dashboard()).items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        result = await api.query(f"count by ({match[2]}) ({substitute(match[1])})")
        assert result["status"] == "success" and result["data"]["result"], f"variable {name}: no values"


async def check_panels(api: PrometheusAPI) -> None:
    problems = []
    for panel in data_panels(load_dashboard()):
        for target in panel["targets"]:
            expr = substitute(target["expr"])
            result = await api.query(expr)
            where = f"{panel['title']} [{target['refId']}] {expr}"
            if result["status"] != "success":
                problems.append(f"{where}: {result.get('error')}")
            elif panel["title"] in EXPECTED_EMPTY:
                assert not any(values(result)), f"{where}: has data now, drop it from EXPECTED_EMPTY"
            elif panel["title"] in ZERO:
                assert values(result) and all(v == 0 for v in values(result)), f"{where}: {result['data']['result']}"
            elif not any(math.isfinite(v) and v != 0 for v in values(result)):
                problems.append(f"{where}: no data but 0 ({result['data']['result']})")
    assert not problems, "\n".join(problems)


async def check_alerts(api: PrometheusAPI) -> None:
    """Every rule loads and evaluates cleanly; the workload's own trouble moves the rules it should: its
    upstream errors (a 500, a dropped stream, an error event) are far above 5% of runs, its refused
    config files fire at once, and its Redis outage is over."""
    wanted = {"UpstreamErrorRateHigh": "pending", "ConfigReloadFailed": "firing", "StateBackendDown": "inactive"}

    async def evaluated() -> list[dict[str, Any]] | None:
        groups = (await api.get("/api/v1/rules"))["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        states = {rule["name"]: rule["state"] for rule in rules}
        settled = rules and all(rule["health"] != "unknown" for rule in rules)
        return rules if settled and all(states.get(name) == state for name, state in wanted.items()) else None

    rules = await api.until(f"every rule evaluated, and {wanted}", evaluated)
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in alert_rules()}
    unhealthy = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not unhealthy
    states = {rule["name"]: rule["state"] for rule in rules}
    assert states["GatewayDown"] == states["GatewayScrapeMissing"] == "inactive"
    for rule in alert_rules():
        assert (await api.query(rule["expr"]))["status"] == "success", rule["alert"]


@needs_prometheus
async def test_a_tenants_first_violation_shows_in_the_violations_panel(make_gateway, tmp_path):
    """The rule's series exists at 0 before the first violation, so increase() sees the 0 → 1."""
    gateway = await make_gateway(**team_tenant({"models": {"allow": ["gpt-4o"]}}))
    prometheus = Prometheus(tmp_path / "prometheus", target=f"127.0.0.1:{gateway.server.port}")
    prometheus.start()
    panel = next(p for p in data_panels(load_dashboard()) if p["title"] == "Violations in the time range")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            api = PrometheusAPI(session, prometheus)
            await api.until("ready", api.ready)
            await api.scraped(2)
            with pytest.raises(openai.PermissionDeniedError):
                await gateway.async_client(api_key=TEAM_KEY).beta.threads.create_and_run(assistant_id="asst_1", model="o3")
            await api.scraped(2)
            rows = (await api.query(substitute(panel["targets"][0]["expr"])))["data"]["result"]
    finally:
        prometheus.stop()
    assert [(r["metric"]["tenant"], r["metric"]["rule"]) for r in rows] == [("team", "models.allow")]
