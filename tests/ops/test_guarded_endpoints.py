"""Who may read /metrics (tenant names, budgets) and guess admin keys: its own port, its own keys, and
a lockout per client address after repeated failed keys."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import Gateway
from tests.support import free_port, series

ENV = {"ADMIN_KEY": "sk-admin", "METRICS_KEY": "sk-metrics"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin(failures: int = 10, **telemetry: Any) -> dict[str, Any]:
    """`make_gateway` arguments: admin key sk-admin locked out after `failures` bad keys a minute."""
    return {
        "env": ENV,
        "admin": {"keys": ["${ADMIN_KEY}"], "failed_attempts": {"max_failures": failures, "window_s": 60}},
        "telemetry": telemetry,
    }


async def get(url: Any, headers: dict[str, str] | None = None, local: str | None = None) -> tuple[int, Any, Any]:
    """One GET on a fresh connection (from the loopback address `local`): status, body, headers."""
    connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url, headers=headers) as response:
        body = await (response.json() if response.content_type == "application/json" else response.text())
        return response.status, body, response.headers


def envelope_code(body: Any) -> str:
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["code"])


async def test_metrics_on_their_own_port_and_not_on_the_main_one(make_gateway):
    port = free_port()
    gateway = await make_gateway(telemetry={"metrics": {"port": port}})
    status, body, _ = await get(gateway.server.make_url("/metrics"))
    assert status == 404 and envelope_code(body) == "not_found"
    await get(gateway.server.make_url("/healthz"))  # counted, so it shows on the metrics port
    status, text, headers = await get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert series(text, "gateway_requests_total", route="/healthz")
    status, body, _ = await get(f"http://127.0.0.1:{port}/v1/threads")  # nothing else is served there
    assert status == 404 and envelope_code(body) == "not_found"


@pytest.mark.parametrize("on_own_port", [False, True])
async def test_metrics_keys_are_required_when_set(make_gateway, on_own_port):
    port = free_port()
    metrics = {"keys": ["${METRICS_KEY}"], **({"port": port} if on_own_port else {})}
    gateway = await make_gateway(**admin(metrics=metrics))
    url = f"http://127.0.0.1:{port}/metrics" if on_own_port else gateway.server.make_url("/metrics")
    for headers in (None, bearer("sk-wrong"), bearer("sk-admin")):
        status, body, _ = await get(url, headers)
        assert status == 401 and envelope_code(body) == "invalid_api_key"
    status, text, _ = await get(url, bearer("sk-metrics"))
    assert status == 200 and "gateway_requests_total" in text


async def test_metrics_stay_open_without_keys(gateway: Gateway):
    status, text, _ = await get(gateway.server.make_url("/metrics"))
    assert status == 200 and "gateway_requests_total" in text


async def test_failed_admin_keys_lock_the_address_out_without_checking_the_key(make_gateway):
    gateway = await make_gateway(**admin(failures=3))
    url = gateway.server.make_url("/admin/usage")
    assert (await get(url, bearer("sk-admin")))[0] == 200  # a right key is not a failure
    for headers in (None, bearer("sk-guess-1"), bearer("sk-guess-2")):
        assert (await get(url, headers))[0] == 401
    for headers in (bearer("sk-guess-3"), bearer("sk-admin")):  # even the right key, now
        status, body, response_headers = await get(url, headers)
        assert status == 429 and envelope_code(body) == "too_many_failed_attempts"
        assert 0 < int(response_headers["Retry-After"]) <= 60
    reload = gateway.server.make_url("/admin/reload")
    async with aiohttp.ClientSession() as session, session.post(reload, headers=bearer("sk-admin")) as response:
        assert response.status == 429  # every admin endpoint
    assert (await get(url, bearer("sk-admin"), local="127.0.0.2"))[0] == 200  # another address is not locked out


async def test_failed_metrics_keys_count_towards_the_same_lockout(make_gateway):
    gateway = await make_gateway(**admin(failures=2, metrics={"keys": ["${METRICS_KEY}"]}))
    for _ in range(2):
        assert (await get(gateway.server.make_url("/metrics"), bearer("sk-guess")))[0] == 401
    status, body, _ = await get(gateway.server.make_url("/metrics"), bearer("sk-metrics"))
    assert status == 429 and envelope_code(body) == "too_many_failed_attempts"
    assert (await get(gateway.server.make_url("/admin/usage"), bearer("sk-admin")))[0] == 429
