"""Webhooks and completion callbacks through the real Envoy, PostgreSQL, Redis, a real A2A
agent and a real HTTP receiver; signatures checked with the reference library."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
import standardwebhooks
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton_sdk.webhooks import DeliveryStatus, InvalidSignatureError
from baton_sdk.webhooks import verify as verify_delivery
from baton_server import keys
from baton_server.clock import SYSTEM_CLOCK
from baton_server.db.pool import create_pool
from baton_server.errors import InvalidArgument
from baton_server.executor.worker import Worker
from baton_server.webhooks import signing
from baton_server.webhooks.delivery import YIELD_IN_FLIGHT, Deliverer, DeliverySettings
from baton_server.webhooks.targets import check_url
from tests.access_support import TEST_SECRETS
from tests.conftest import FAST_WORKER
from tests.rest_support import echo_workflow, error_of
from tests.runs_support import deliver_process


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    #: Status codes to answer, in order; then 200.
    answers: list[int] = field(default_factory=list)
    hang: bool = False
    #: Seconds to wait before answering.
    delay_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        if self.hang:
            await asyncio.sleep(3600)
        await asyncio.sleep(self.delay_s)
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text=f"answered {status}")

    async def wait_for(self, count: int, *, within: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} received"
            await asyncio.sleep(0.02)
        return self.received

    def of(self, event: str) -> list[Received]:
        return [r for r in self.received if r.json["type"] == event]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/hook"
    yield found
    await runner.cleanup()


def verify(secret: str, received: Received) -> Any:
    """What a receiver does: the reference library checks the signature and age."""
    return standardwebhooks.Webhook(secret).verify(received.body, received.headers)


async def test_a_subscribed_endpoint_receives_signed_events_of_runs_and_workflows(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str, receiver: Receiver
) -> None:
    created = await rest.post(
        "/api/v1/webhooks",
        json={
            "url": receiver.url,
            "events": ["workflow.created", "workflow.executed", "execution.completed"],
            "description": "all of it",
        },
    )
    assert created.status_code == 201, created.text
    webhook = created.json()
    secret = webhook["secret"]
    assert secret.startswith("whsec_")
    # The secret is shown once: never again.
    fetched = (await rest.get(f"/api/v1/webhooks/{webhook['id']}")).json()
    assert fetched["secret"] == ""
    assert fetched["events"] == ["workflow.created", "workflow.executed", "execution.completed"]

    workflow_id = await echo_workflow(rest, echo_agent_url)
    run = (await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={})).json()
    await receiver.wait_for(3)
    assert [r.json["type"] for r in receiver.received[:1]] == ["workflow.created"]
    completed = receiver.of("execution.completed")
    assert len(completed) == 1
    body = verify(secret, completed[0])
    assert body["data"]["run_id"] == run["id"]
    assert body["data"]["workflow_id"] == workflow_id
    assert body["data"]["status"] == "COMPLETED"
    assert verify(secret, receiver.of("workflow.executed")[0])["data"]["run_id"] == run["id"]
    # A forged body does not verify.
    forged = Received(completed[0].headers, completed[0].body.replace(b"COMPLETED", b"FAILED"))
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verify(secret, forged)

    listed = await _eventually_succeeded(rest, webhook["id"])
    assert len(listed) == 3
    first = listed[0]
    assert first["last_status_code"] == 200
    assert first["response_excerpt"] == "answered 200"
    assert completed[0].headers["webhook-id"] in {d["id"] for d in listed}


async def test_a_failed_attempt_is_retried_with_the_same_webhook_id(
    rest: httpx.AsyncClient, worker: Worker, receiver: Receiver
) -> None:
    receiver.answers = [500]
    user_secret = "whsec_abcdefghijklmnopqrstuvwxyz"  # seed 003's example: not base64
    created = await rest.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["workflow.created"], "secret": user_secret},
    )
    assert created.status_code == 201, created.text
    assert created.json()["secret"] == ""  # the caller's own secret is not echoed
    webhook_id = created.json()["id"]
    await rest.post(
        "/api/v1/agents", json={"name": "a", "url": "http://127.0.0.1:9/"}
    )  # a workflow needs an agent
    workflow = await rest.post(
        "/api/v1/workflows",
        json={"name": "retried", "start_step": "s", "steps": {"s": {"id": "s", "agent_name": "a"}}},
    )
    assert workflow.status_code == 201, workflow.text
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    # Signed with the user's secret as UTF-8 bytes: ten lines of hmac verify it.
    expected = signing.signature(
        user_secret,
        second.headers["webhook-id"],
        int(second.headers["webhook-timestamp"]),
        second.body,
    )
    assert second.headers["webhook-signature"] == expected
    await _eventually_succeeded(rest, webhook_id, attempts=2)
    delivery = (await rest.get(f"/api/v1/webhooks/{webhook_id}/deliveries")).json()["items"][0]
    assert delivery["last_status_code"] == 200

    # Redeliver: the same id and body again.
    again = await rest.post(
        f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver", json={}
    )
    assert again.status_code == 202, again.text
    third = (await receiver.wait_for(3))[2]
    assert (third.headers["webhook-id"], third.body) == (first.headers["webhook-id"], first.body)


async def _eventually_succeeded(
    rest: httpx.AsyncClient, webhook_id: str, *, attempts: int = 1
) -> list[Any]:
    """The webhook's deliveries once all have succeeded (a receiver's answer is recorded
    right after it arrives), each after ``attempts`` attempts."""
    deadline = time.monotonic() + 10
    while True:
        items: list[Any] = (await rest.get(f"/api/v1/webhooks/{webhook_id}/deliveries")).json()[
            "items"
        ]
        if items and all(item["status"] == "succeeded" for item in items):
            assert [item["attempts"] for item in items] == [attempts] * len(items)
            return items
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)


async def test_execute_async_posts_the_final_run_to_the_callback_url(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str, receiver: Receiver
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "cb")
    started = await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute_async",
        json={"parameters": {"feedback_id": "f_12345"}, "callback_url": receiver.url},
    )
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["status"] == "PENDING"
    assert run["input_data"] == {"feedback_id": "f_12345"}
    assert run["callback_url"] == receiver.url
    secret = run["callback_secret"]
    assert secret.startswith("whsec_")
    (received,) = await receiver.wait_for(1)
    body = verify(secret, received)
    assert body["type"] == "execution.callback"
    assert body["data"]["id"] == run["id"]
    assert body["data"]["status"] == "COMPLETED"
    assert body["data"]["callback_secret"] == ""  # never sent anywhere again
    fetched = (await rest.get(f"/api/v1/runs/{run['id']}")).json()
    assert fetched["callback_url"] == receiver.url
    assert fetched["callback_secret"] == ""


async def test_ping_and_cancellation_events(
    rest: httpx.AsyncClient, receiver: Receiver, echo_agent_url: str, pool: asyncpg.Pool
) -> None:
    created = await rest.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": ["execution.cancelled"]}
    )
    webhook = created.json()
    ping = await rest.post(f"/api/v1/webhooks/{webhook['id']}/test", json={})
    assert ping.status_code == 202, ping.text
    assert ping.json()["event"] == "ping"
    assert ping.json()["status"] == "pending"
    # No worker runs here: the run stays PENDING, its event waits in the outbox until a
    # deliverer fans it out, and the deliveries wait for their attempts.
    workflow_id = await echo_workflow(rest, echo_agent_url, "cancelled")
    run = (await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={})).json()
    cancelled = await rest.post(f"/api/v1/runs/{run['id']}/cancel", json={"reason": "test"})
    assert cancelled.status_code == 200, cancelled.text
    queued = await pool.fetch("SELECT event, run_id FROM outbox_events")
    assert [(e["event"], e["run_id"]) for e in queued] == [("execution.cancelled", run["id"])]
    assert await Deliverer(pool, TEST_SECRETS).expand() == 1
    assert await pool.fetchval("SELECT count(*) FROM outbox_events") == 0
    listed = (await rest.get(f"/api/v1/webhooks/{webhook['id']}/deliveries")).json()
    assert [d["event"] for d in listed["items"]] == ["execution.cancelled", "ping"]
    assert {d["status"] for d in listed["items"]} == {"pending"}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"url": "ftp://example.com/x", "events": ["ping"]}, "url", "INVALID_URL"),
        (
            {"url": "https://example.com/x", "events": ["execution.completed", "nope"]},
            "events[1]",
            "INVALID_EVENT_TYPE",
        ),
        ({"url": "https://example.com/x", "events": []}, "events", "INVALID_FIELD"),
        (
            {"url": "https://example.com/x", "events": ["workflow.created"], "secret": "short"},
            "secret",
            "INVALID_FIELD",
        ),
    ],
)
async def test_bad_webhooks_are_refused_naming_the_field(
    rest: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, Any], field: str, reason: str
) -> None:
    response = await rest.post("/api/v1/webhooks", json=body)
    assert response.status_code == 400, response.text
    found = error_of(response)
    assert found["reason"] == reason
    assert field in found["fields"]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM webhooks"))).scalar_one() == 0


async def test_a_bad_callback_url_is_refused_and_starts_no_run(
    rest: httpx.AsyncClient, echo_agent_url: str, engine: AsyncEngine
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "badcb")
    response = await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute_async",
        json={"parameters": {}, "callback_url": "not a url"},
    )
    assert response.status_code == 400, response.text
    assert "callback_url" in error_of(response)["fields"]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM runs"))).scalar_one() == 0


async def test_private_targets_are_refused_unless_allowed() -> None:
    for url in ("http://127.0.0.1:8080/x", "http://169.254.169.254/latest", "http://[::1]/x"):
        with pytest.raises(InvalidArgument, match="private, loopback or link-local") as raised:
            await check_url(url, "url", allow_private=False)
        assert raised.value.reason == "INVALID_URL"
        await check_url(url, "url", allow_private=True)
    await check_url("https://93.184.215.14/x", "url", allow_private=False)


async def test_an_attempt_cut_short_by_a_crash_is_made_again_after_its_lease(
    database_url: str, rest: httpx.AsyncClient, receiver: Receiver
) -> None:
    """At least once: a deliverer that dies mid-attempt (its receiver never answered)
    leaves a lease; once it expires, another deliverer sends the same webhook-id."""
    webhook = (
        await rest.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["workflow.created"]}
        )
    ).json()
    ping = (await rest.post(f"/api/v1/webhooks/{webhook['id']}/test", json={})).json()
    receiver.hang = True
    settings = DeliverySettings(allow_private=True, timeout_s=60)
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        doomed = Deliverer(pool, TEST_SECRETS, settings)
        doomed.start()
        await receiver.wait_for(1)
        await doomed.stop()  # dies mid-attempt: nothing recorded, the lease stays
        receiver.hang = False

        class Later:
            def now(self) -> Any:
                return SYSTEM_CLOCK.now() + timedelta(seconds=settings.lease_s + 1)

        heir = Deliverer(pool, TEST_SECRETS, settings, clock=Later())
        heir.start()
        second = (await receiver.wait_for(2))[1]
        await heir.drain()
        await heir.stop()
    finally:
        await pool.close()
    assert second.headers["webhook-id"] == ping["id"] == receiver.received[0].headers["webhook-id"]
    delivery = (await rest.get(f"/api/v1/webhooks/{webhook['id']}/deliveries")).json()["items"][0]
    assert (delivery["status"], delivery["attempts"]) == ("succeeded", 1)


def test_generated_secrets_are_standard_webhooks_secrets() -> None:
    secret = signing.generate_secret()
    hook = standardwebhooks.Webhook(secret)
    msg_id, now = f"msg_{uuid.uuid4()}", int(time.time())
    body = b'{"type":"ping"}'
    headers = signing.headers(secret, msg_id, now, body)
    assert hook.verify(body, headers) == {"type": "ping"}


async def test_the_sdk_subscribes_and_verifies(
    rest_url: str,
    rest: httpx.AsyncClient,
    worker: Worker,
    echo_agent_url: str,
    receiver: Receiver,
) -> None:
    async with baton_sdk.connect(rest_url.removeprefix("http://")) as client:
        hook = await client.webhooks.create(url=receiver.url, events=["execution.completed"])
        assert hook.secret.startswith("whsec_")
        assert [w.id for w in await client.webhooks.list().to_list()] == [hook.id]
        await client.agents.create(name="echo", url=echo_agent_url)
        workflow = await client.workflows.create(
            name="sdk",
            start_step="s1",
            steps={"s1": {"agent_name": "echo"}},
        )
        run = await client.runs.execute(workflow, callback_url=receiver.url)
        assert run.callback_url == receiver.url
        assert run.callback_secret is not None
        await receiver.wait_for(2)
        callback = next(r for r in receiver.received if r.json["type"] == "execution.callback")
        event = next(r for r in receiver.received if r.json["type"] == "execution.completed")
        assert (
            verify_delivery(run.callback_secret, callback.body, callback.headers)["data"]["id"]
            == run.id
        )
        assert verify_delivery(hook.secret, event.body, event.headers)["data"]["run_id"] == run.id
        with pytest.raises(InvalidSignatureError):
            verify_delivery(hook.secret, callback.body, callback.headers)  # another secret
        with pytest.raises(InvalidSignatureError):
            verify_delivery(hook.secret, event.body, event.headers, now=time.time() + 3600)
        await _eventually_succeeded(rest, hook.id)
        deliveries = await client.webhooks.deliveries(hook.id).to_list()
        assert [d.status for d in deliveries] == [DeliveryStatus.SUCCEEDED]
        await client.webhooks.update(hook.id, enabled=False)
        assert (await client.webhooks.get(hook.id)).enabled is False
        await client.webhooks.delete(hook.id)
        assert await client.webhooks.list().to_list() == []


async def test_a_repeated_execute_returns_no_secret_that_signs_nothing(
    rest: httpx.AsyncClient, echo_agent_url: str
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "replayed")
    body = {"parameters": {}, "callback_url": "http://127.0.0.1:9/cb", "request_id": "once"}
    first = await rest.post(f"/api/v1/workflows/{workflow_id}/execute_async", json=body)
    again = await rest.post(f"/api/v1/workflows/{workflow_id}/execute_async", json=body)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["callback_secret"].startswith("whsec_")
    assert again.json()["callback_secret"] == ""


async def test_kill_9_of_a_delivering_process_loses_no_delivery(
    database_url: str,
    rest: httpx.AsyncClient,
    receiver: Receiver,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    """``baton deliver`` is killed with SIGKILL while attempts are in flight: another
    one delivers everything, resending with the same webhook-id only what was in flight."""
    webhook = (
        await rest.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["workflow.created"]}
        )
    ).json()
    pings = [
        (await rest.post(f"/api/v1/webhooks/{webhook['id']}/test", json={})).json()["id"]
        for _ in range(30)
    ]
    receiver.delay_s = 0.3
    victim = deliver_process(database_url)
    worker_processes.append(victim)
    await receiver.wait_for(5, within=30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    await asyncio.sleep(0.5)  # requests the victim sent that are still being read
    before_kill = {r.headers["webhook-id"] for r in receiver.received}
    worker_processes.append(deliver_process(database_url))

    deadline = time.monotonic() + 60
    while True:
        page = (await rest.get(f"/api/v1/webhooks/{webhook['id']}/deliveries?page_size=100")).json()
        if all(d["status"] == "succeeded" for d in page["items"]):
            break
        assert time.monotonic() < deadline, [d["status"] for d in page["items"]]
        await asyncio.sleep(0.2)
    assert page["total"] == 30
    received = [r.headers["webhook-id"] for r in receiver.received]
    assert set(received) == set(pings), "every delivery arrived"
    resent = {msg_id for msg_id in received if received.count(msg_id) > 1}
    assert resent <= before_kill, "only attempts in flight at the kill are sent again"
    assert all(d["attempts"] == 1 for d in page["items"])


async def test_deliverers_yield_to_a_saturated_executor(
    rest: httpx.AsyncClient,
    receiver: Receiver,
    pool: asyncpg.Pool,
    redis_client: redis.Redis,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
) -> None:
    """A worker whose admission control holds runs back says so in Redis; deliverers
    then keep only a trickle in flight, and go back to full speed when it has room."""
    # One run at a time and two slow runs: the second waits, and the worker says why.
    settings = dataclasses.replace(FAST_WORKER, max_runs=1)
    worker = Worker(database_url, redis_url, settings, secrets=TEST_SECRETS, deliver=False)
    await worker.start()
    try:
        workflow_id = await echo_workflow(rest, echo_agent_url, "slow")
        slow = {"_mode": "sleep", "_sleep_ms": 3000}
        changed = await rest.put(
            f"/api/v1/workflows/{workflow_id}",
            json={"steps": {"s1": {"id": "s1", "agent_name": "echo-slow", "input_mapping": slow}}},
        )
        assert changed.status_code == 200, changed.text
        for _ in range(2):
            started = await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={})
            assert started.status_code == 202, started.text
        deadline = time.monotonic() + 10
        while not await redis_client.exists(keys.EXECUTOR_SATURATED):
            assert time.monotonic() < deadline, "the worker never said it was saturated"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()

    webhook = (
        await rest.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["workflow.created"]}
        )
    ).json()
    for _ in range(6):
        await rest.post(f"/api/v1/webhooks/{webhook['id']}/test", json={})
    receiver.hang = True
    await redis_client.set(keys.EXECUTOR_SATURATED, "test", px=60_000)
    deliverer = Deliverer(
        pool,
        TEST_SECRETS,
        DeliverySettings(allow_private=True, timeout_s=60),
        redis_client=redis_client,
    )
    deliverer.start()
    try:
        await receiver.wait_for(YIELD_IN_FLIGHT)
        await asyncio.sleep(0.5)
        assert len(receiver.received) == YIELD_IN_FLIGHT, "a trickle while saturated"
        await redis_client.delete(keys.EXECUTOR_SATURATED)
        await receiver.wait_for(6)  # the rest, at once
    finally:
        await deliverer.stop()


async def test_schedule_events_are_delivered(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str, receiver: Receiver
) -> None:
    hook = await rest.post(
        "/api/v1/webhooks",
        json={
            "url": receiver.url,
            "events": [
                "schedule.created",
                "schedule.updated",
                "schedule.triggered",
                "schedule.deleted",
            ],
        },
    )
    secret = hook.json()["secret"]
    workflow_id = await echo_workflow(rest, echo_agent_url, "scheduled")
    schedule = (
        await rest.post(
            f"/api/v1/workflows/{workflow_id}/schedules",
            json={"name": "nightly", "schedule_type": "cron", "cron_expression": "0 2 * * *"},
        )
    ).json()
    path = f"/api/v1/workflow_schedules/{schedule['id']}"
    await rest.put(path, json={"enabled": False})
    run = (await rest.post(f"{path}/trigger", json={})).json()
    await rest.delete(path)
    received = await receiver.wait_for(4)
    # Deliveries to one endpoint run concurrently: they may arrive in any order.
    bodies = {body["type"]: body for body in (verify(secret, r) for r in received)}
    assert set(bodies) == {
        "schedule.created",
        "schedule.updated",
        "schedule.triggered",
        "schedule.deleted",
    }
    assert {b["data"]["schedule_id"] for b in bodies.values()} == {schedule["id"]}
    assert bodies["schedule.created"]["data"]["next_execution"].endswith("T02:00:00+00:00")
    assert bodies["schedule.updated"]["data"]["enabled"] is False
    triggered = bodies["schedule.triggered"]["data"]
    assert (triggered["run_id"], triggered["manual"]) == (run["id"], True)
