"""/docs (Swagger UI) and /redoc work without internet access: a real Chromium loads them from a live
service with every request that leaves 127.0.0.1 blocked, none is even attempted, and every
operation of the OpenAPI document is listed on the page. The pages' Content-Security-Policy
('self' only) blocks nothing they need.

Needs Chromium at /usr/bin/chromium (Debian's `chromium`), driven by Playwright through
`executable_path`, as tests/browser/test_demo_checkout.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from app.providers.fintecture.settings import FintectureSettings
from tests.support.servers import reserve_socket, serve

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1"}

if not shutil.which(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
async def service_url(settings: Settings) -> AsyncIterator[str]:
    app = create_app(settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with serve(app, reserve_socket()) as url:
        yield url


def _summaries(document: dict[str, Any]) -> list[str]:
    return [
        operation["summary"]
        for path_item in document["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "summary" in operation
    ]


@pytest.mark.parametrize(("page_path", "ready_selector"), [("/docs", ".opblock"), ("/redoc", "h2")])
async def test_the_api_docs_show_every_operation_with_no_request_leaving_the_machine(
    service_url: str, page_path: str, ready_selector: str
) -> None:
    from playwright.async_api import Request, Route, async_playwright

    async with httpx.AsyncClient() as client:  # the service runs on this event loop
        document = (await client.get(f"{service_url}/openapi.json")).json()
    summaries = _summaries(document)
    assert len(summaries) >= 20

    requested: list[str] = []
    blocked: list[str] = []
    policy_violations: list[str] = []

    async def only_local(route: Route, request: Request) -> None:
        requested.append(request.url)
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            await route.continue_()
        else:
            blocked.append(request.url)
            await route.abort("blockedbyclient")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on(
                "console",
                lambda message: (
                    policy_violations.append(message.text)
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            await page.route("**/*", only_local)
            response = await page.goto(f"{service_url}{page_path}")
            assert response is not None and response.status == 200
            await page.wait_for_selector(ready_selector, timeout=30000)
            # Both viewers render the operations in one go once the document is read.
            await page.wait_for_load_state("networkidle")
            text = await page.inner_text("body")
        finally:
            await browser.close()

    assert not blocked, f"{page_path} tried to reach other hosts: {blocked}"
    assert f"{service_url}/openapi.json" in requested
    assert any("/docs/assets/" in url for url in requested)
    missing = [summary for summary in summaries if summary not in text]
    assert not missing, f"{page_path} does not list: {missing}"
    assert not policy_violations, policy_violations
