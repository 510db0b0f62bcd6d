"""The web console (/ui) in a real headless Chromium, against the real server, worker,
Envoy and A2A agent: a run started from the page shows its step turning completed
without a reload, a slow run is cancelled from the page, and the other pages show
what the API holds."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.executor.worker import Worker
from tests.browser_support import open_page

LIVE = 30_000  # ms: how long the page may take to show a change


async def _workflow(rest: httpx.AsyncClient, agent_url: str) -> str:
    """`quick` (echo) then `slow` (sleeps as long as the input's `sleep_ms` says)."""
    agent = await rest.post("/api/v1/agents", json={"name": "echo", "url": agent_url})
    assert agent.status_code == 201, agent.text
    created = await rest.post(
        "/api/v1/workflows",
        json={
            "name": "console",
            "start_step": "quick",
            "steps": {
                "quick": {"id": "quick", "agent_name": "echo", "next_step": "slow"},
                "slow": {
                    "id": "slow",
                    "agent_name": "echo",
                    "input_mapping": {
                        "_mode": "sleep",
                        "_sleep_ms": "${workflow.input.sleep_ms}",
                    },
                },
            },
        },
    )
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    return workflow_id


async def test_a_run_started_from_the_console_moves_live_and_can_be_cancelled(
    browser: Browser,
    rest: httpx.AsyncClient,
    rest_url: str,
    engine: AsyncEngine,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    workflow_id = await _workflow(rest, echo_agent_url)
    opened = await open_page(browser, rest_url)
    page = opened.page
    try:
        await page.goto(f"/ui#/workflows/{workflow_id}")
        await expect(page.get_by_role("heading", name="console")).to_be_visible(timeout=LIVE)
        await page.locator("#run-input").fill('{"sleep_ms": 60000}')
        await page.locator("#start-run").click()

        # The run page: its graph turns `quick` completed and `slow` running, live.
        await expect(page).to_have_url(re.compile(r"#/runs/run-[0-9a-f-]+$"))
        run_id = page.url.rsplit("/", 1)[1]
        quick = page.locator('g.node[data-step="quick"]')
        slow = page.locator('g.node[data-step="slow"]')
        await expect(quick).to_have_class("node COMPLETED", timeout=LIVE)
        await expect(slow).to_have_class("node RUNNING", timeout=LIVE)
        navigations = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))

        # A step's detail: its output, from the API.
        await quick.click()
        await expect(page.get_by_role("heading", name="Output")).to_be_visible()
        await expect(page.locator("main")).to_contain_text('"echo": true')

        # Cancel from the page: the run and the header follow without a reload.
        await page.locator("#cancel-run").click()
        await expect(page.locator("h1 .status")).to_have_text("CANCELLED", timeout=LIVE)
        stored = (await rest.get(f"/api/v1/runs/{run_id}")).json()
        assert stored["status"] == "CANCELLED"
        assert navigations == [], "the page was reloaded"
        await expect(page.locator("#retry-run")).to_be_enabled()

        # The runs list shows it, filtered by status.
        await page.goto("/ui#/runs?status=CANCELLED")
        await expect(page.locator("tbody tr").first).to_contain_text("console")
        await expect(page.locator("tbody tr").first).to_contain_text("CANCELLED")
        assert opened.elsewhere == []
        assert opened.errors == []
    finally:
        await page.close()


async def test_agents_show_their_health_and_workflows_their_versions(
    browser: Browser, rest: httpx.AsyncClient, rest_url: str, echo_agent_url: str
) -> None:
    workflow_id = await _workflow(rest, echo_agent_url)
    changed = await rest.put(
        f"/api/v1/workflows/{workflow_id}",
        json={
            "start_step": "quick",
            "steps": {"quick": {"id": "quick", "agent_name": "echo"}},
        },
    )
    assert changed.status_code == 200, changed.text
    opened = await open_page(browser, rest_url)
    page = opened.page
    try:
        await page.goto("/ui#/agents")
        row = page.locator("tbody tr", has_text="echo")
        await expect(row).to_contain_text("healthy", timeout=LIVE)
        await expect(row).to_contain_text(echo_agent_url)

        await page.goto(f"/ui#/workflows/{workflow_id}")
        await expect(page.get_by_role("heading", name="Compare versions")).to_be_visible(
            timeout=LIVE
        )
        # Version 2 dropped `slow`: the diff marks its lines as removed.
        await expect(page.locator(".diff .del").first).to_contain_text('"slow"')
        assert opened.elsewhere == []
        assert opened.errors == []
    finally:
        await page.close()


async def test_schedules_trigger_and_webhook_deliveries_from_the_console(
    browser: Browser, rest: httpx.AsyncClient, rest_url: str, echo_agent_url: str
) -> None:
    workflow_id = await _workflow(rest, echo_agent_url)
    schedule = await rest.post(
        f"/api/v1/workflows/{workflow_id}/schedules",
        json={"name": "nightly", "schedule_type": "cron", "cron_expression": "0 2 * * *"},
    )
    assert schedule.status_code == 201, schedule.text
    webhook = await rest.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["execution.completed"]},
    )
    assert webhook.status_code == 201, webhook.text
    opened = await open_page(browser, rest_url)
    page = opened.page
    try:
        await page.goto("/ui#/schedules")
        row = page.locator("tbody tr", has_text="nightly")
        await expect(row).to_contain_text("0 2 * * *", timeout=LIVE)
        await row.get_by_role("button", name="Trigger now").click()
        # Triggering makes a run and shows it.
        await expect(page).to_have_url(re.compile(r"#/runs/run-[0-9a-f-]+$"), timeout=LIVE)
        runs = (await rest.get(f"/api/v1/runs?workflow_id={workflow_id}")).json()
        assert runs["total"] == 1
        assert runs["items"][0]["triggered_by"].startswith("schedule:")

        await page.goto("/ui#/webhooks")
        await page.locator("tbody tr", has_text="127.0.0.1:9").click()
        await expect(page.get_by_role("heading", name="Deliveries")).to_be_visible(timeout=LIVE)
        await expect(page.locator("tbody tr")).to_have_count(0)
        await page.get_by_role("button", name="Send a test event").click()
        await expect(page.locator("tbody tr")).to_have_count(1, timeout=LIVE)
        assert opened.elsewhere == []
        assert opened.errors == []
    finally:
        await page.close()
