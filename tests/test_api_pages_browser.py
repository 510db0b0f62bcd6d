"""/docs (Swagger UI) and /redoc in a real headless Chromium, with no network: they
render the whole API, and Swagger UI's "Try it out" calls the running server."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser_support import open_page
from tests.test_openapi import DOCUMENT


async def test_swagger_ui_lists_the_api_and_tries_a_call(browser: Browser, rest_url: str) -> None:
    opened = await open_page(browser, rest_url)
    page = opened.page
    try:
        await page.goto("/docs")
        await expect(page.locator(".opblock-tag").first).to_be_visible(timeout=30_000)
        tags = {t.split("\n")[0] for t in await page.locator(".opblock-tag").all_inner_texts()}
        assert {"Agent", "Workflow", "Run", "System"} <= tags
        # Try GET /health from the page: the answer shown is the server's.
        health = page.locator("#operations-System-SystemService_GetHealth")
        await health.locator(".opblock-summary").click()
        await health.get_by_role("button", name="Try it out").click()
        await health.get_by_role("button", name="Execute").click()
        status = health.locator(".live-responses-table .response .response-col_status")
        await expect(status.first).to_have_text("200", timeout=30_000)
        await expect(health.locator(".live-responses-table")).to_contain_text('"healthy"')
        assert opened.elsewhere == []
        assert opened.errors == []
    finally:
        await page.close()


async def test_redoc_renders_the_api_offline(browser: Browser, rest_url: str) -> None:
    opened = await open_page(browser, rest_url)
    page = opened.page
    try:
        await page.goto("/redoc")
        title = f"{DOCUMENT['info']['title']} ({DOCUMENT['info']['version']})"
        await expect(page.get_by_role("heading", name=title)).to_be_visible(timeout=30_000)
        await page.get_by_text("Workflow", exact=True).first.click()
        await expect(
            page.get_by_text("/api/v1/workflows/{workflow_id}/execute").first
        ).to_be_attached()
        assert opened.elsewhere == []
        assert opened.errors == []
    finally:
        await page.close()
