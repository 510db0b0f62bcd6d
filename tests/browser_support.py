"""A real browser for the web pages: Debian's Chromium, driven headless by Playwright.

Playwright's own browser downloads are not used (and not reachable here): it drives the
system's ``chromium``. Without one the browser tests are skipped, except in CI
(``CI`` set), where ``.ci/run`` installs it and a missing browser is a failure.

Every request the page would send anywhere but the server under test is refused at the
network and recorded: the pages must work with no network at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As this machine's browser needs to start with no network and as root.
_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class BrowserPage:
    """A page on the server under test, and what it tried to reach elsewhere."""

    page: Page
    elsewhere: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no chromium: CI must install it (apt-get install chromium)")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    async with async_playwright() as playwright:
        started = await playwright.chromium.launch(executable_path=CHROMIUM, args=_ARGS)
        yield started
        await started.close()


async def open_page(browser: Browser, base_url: str) -> BrowserPage:
    """A new page that may only talk to ``base_url``; close it with ``page.close()``."""
    page = await browser.new_page(base_url=base_url)
    opened = BrowserPage(page)

    async def refuse(route: Route) -> None:
        opened.elsewhere.append(route.request.url)
        await route.abort()

    await page.route(lambda url: not url.startswith(base_url), refuse)
    page.on("pageerror", lambda error: opened.errors.append(str(error)))
    return opened
