"""System & Health over REST: /health, /health/ready (503 while Redis is down or hung,
within its timeout) and the Prometheus metrics at /metrics."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.app import SERVICE_NAMES, start_grpc
from baton_server.system.service import CHECK_TIMEOUT_S
from tests.access_support import TEST_SECRETS
from tests.rest_support import RestProxy, start_envoy
from tests.test_executor_crash import RedisProcess
from tests.test_rest_api import assert_plain_json, start_run

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_health_is_liveness_with_the_documented_body(rest: httpx.AsyncClient) -> None:
    body = assert_plain_json(await rest.get("/health"), 200)
    assert body.keys() == {"status", "timestamp", "version", "uptime_seconds", "services"}
    assert body["status"] == "healthy"
    assert RFC3339.match(body["timestamp"])
    assert body["version"] == importlib.metadata.version("baton-orchestrator")
    assert body["uptime_seconds"] > 0
    assert body["services"] == dict.fromkeys(SERVICE_NAMES, "SERVING")


async def test_readiness_checks_postgresql_and_redis(rest: httpx.AsyncClient) -> None:
    body = assert_plain_json(await rest.get("/health/ready"), 200)
    assert body["ready"] is True
    assert RFC3339.match(body["timestamp"])
    assert body["checks"].keys() == {"database", "redis"}
    for check in body["checks"].values():
        assert check["status"] == "healthy"
        assert check["message"]
        assert 0 < check["response_time_ms"] < CHECK_TIMEOUT_S * 1000


async def test_metrics_count_rpcs_and_read_runs_queue_and_lag_at_scrape_time(
    rest: httpx.AsyncClient,
) -> None:
    run = await start_run(rest)  # no worker: it stays PENDING
    second = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{run['workflow_id']}/execute", json={}), 202
    )
    await rest.post(f"/api/v1/runs/{second['run_id']}/cancel", json={})
    before = samples((await rest.get("/metrics")).text)
    await rest.get("/api/v1/runs/run-unknown")
    await rest.get(f"/api/v1/runs/{run['run_id']}")

    response = await rest.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    after = samples(response.text)

    def runs(status: str) -> float:
        return after[("baton_runs", (("status", status),))]

    assert (runs("PENDING"), runs("CANCELLED"), runs("COMPLETED")) == (1, 1, 0)
    assert 0 < after[("baton_executor_lag_seconds", ())] < 60
    assert after[("baton_run_queue_depth", ())] >= 1
    assert ("baton_run_queue_pending", ()) in after
    assert after[("baton_scrape_source_up", (("source", "database"),))] == 1
    assert after[("baton_scrape_source_up", (("source", "redis"),))] == 1
    assert ("baton_event_subscribers", ()) in after
    version = importlib.metadata.version("baton-orchestrator")
    assert after[("baton_info", (("version", version),))] == 1

    def requests(source: dict[Any, float], method: str, code: str) -> float:
        key = (
            "baton_rpc_requests_total",
            (("code", code), ("method", method), ("service", "baton.v1.RunService")),
        )
        return source.get(key, 0)

    assert requests(after, "GetRun", "NOT_FOUND") == requests(before, "GetRun", "NOT_FOUND") + 1
    assert requests(after, "GetRun", "OK") == requests(before, "GetRun", "OK") + 1
    assert requests(after, "ExecuteWorkflow", "OK") >= 2
    latency = (
        "baton_rpc_duration_seconds_count",
        (("method", "GetRun"), ("service", "baton.v1.RunService")),
    )
    assert after[latency] >= 2


@pytest.fixture
async def own_stack(engine: AsyncEngine) -> AsyncIterator[tuple[RestProxy, RedisProcess]]:
    """A server and Envoy of their own, on a Redis the test may stop."""
    own_redis = RedisProcess()
    await own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    app = await start_grpc(engine, client, "127.0.0.1:0", secrets=TEST_SECRETS)
    await app.set_serving(True)
    proxy = await start_envoy(app.port)
    try:
        yield proxy, own_redis
    finally:
        await proxy.envoy.stop()
        await app.stop(grace=1)
        await client.aclose()
        await own_redis.kill()


async def ready_within(http: httpx.AsyncClient, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        response = await http.get("/health/ready")
        if response.status_code == 200 or time.monotonic() > deadline:
            body: dict[str, Any] = assert_plain_json(response, 200)
            return body
        await asyncio.sleep(0.1)


async def timed_readiness(http: httpx.AsyncClient) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    body = assert_plain_json(await http.get("/health/ready"), 503)
    return body, time.monotonic() - started


async def test_readiness_is_503_while_redis_is_hung_or_down_and_recovers(
    own_stack: tuple[RestProxy, RedisProcess],
) -> None:
    proxy, own_redis = own_stack
    assert own_redis.process is not None
    async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as http:
        assert (await ready_within(http, 5))["ready"] is True

        # Hung: Redis accepts nothing. The check gives up after its timeout.
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        try:
            body, elapsed = await timed_readiness(http)
        finally:
            os.kill(own_redis.process.pid, signal.SIGCONT)
        assert elapsed < CHECK_TIMEOUT_S + 1.5
        assert body["ready"] is False
        assert body["checks"]["redis"]["status"] == "unhealthy"
        assert "did not answer" in body["checks"]["redis"]["message"]
        assert "response_time_ms" not in body["checks"]["redis"]
        assert body["checks"]["database"]["status"] == "healthy"
        assert (await ready_within(http, 5))["ready"] is True

        # Down: connections are refused.
        await own_redis.kill()
        body, elapsed = await timed_readiness(http)
        assert elapsed < CHECK_TIMEOUT_S + 1.5
        assert body["checks"]["redis"]["status"] == "unhealthy"
        assert "connection failed" in body["checks"]["redis"]["message"]
        # Liveness does not depend on Redis; metrics report the broken source.
        assert assert_plain_json(await http.get("/health"), 200)["status"] == "healthy"
        metrics = samples((await http.get("/metrics")).text)
        assert metrics[("baton_scrape_source_up", (("source", "redis"),))] == 0
        assert ("baton_run_queue_depth", ()) not in metrics

        await own_redis.start()  # same port
        recovered = await ready_within(http, 10)
        assert recovered["checks"]["redis"]["status"] == "healthy"
