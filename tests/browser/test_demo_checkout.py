"""The README's run command, driven by a real browser: `checkout demo` -> shop -> choose a provider
-> Pay by bank -> the simulated provider page -> back to the shop, which shows the order as the
database has it; with each provider.

Needs Chromium at /usr/bin/chromium (Debian's `chromium`; `.ci/run` installs it). Playwright drives
it through `executable_path` and never downloads a browser of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Order
from tests.support.servers import reserve_socket

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

if not shutil.which(CHROMIUM) and not os.environ.get("CI"):
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    sock = reserve_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@pytest.fixture
def demo(database_url: str, clean_database: str, tmp_path: Path) -> Iterator[str]:
    port, simulator_port = _free_port(), _free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "demo",
            "--port",
            str(port),
            "--simulator-port",
            str(simulator_port),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else "demo exited"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "demo did not become ready in 60 s"
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# (provider chosen in the shop, the provider page's URL, the button pressed there, the status shown)
CHECKOUTS = [
    ("fintecture", "**/connect/v2/**", "confirm", "paid"),
    ("fintecture", "**/connect/v2/**", "reject", "failed"),
    ("powens", "**/powens/webview/**", "validate", "paid"),
    ("powens", "**/powens/webview/**", "cancel", "failed"),
]


@pytest.mark.parametrize(("provider", "page_url", "outcome", "shown"), CHECKOUTS)
async def test_a_newcomer_pays_an_order_in_the_browser(
    demo: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: str,
    page_url: str,
    outcome: str,
    shown: str,
) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{demo}/")
            await page.wait_for_selector("#products input")
            await page.check(f"input[name=provider][value={provider}]")
            await page.click("#pay")
            await page.wait_for_url(page_url)
            await page.click(f"button[value={outcome}]")
            await page.wait_for_url("**/checkout/result**")
            # A selector, not a script: the page's Content-Security-Policy forbids evaluating strings.
            await page.wait_for_selector(f"#status[data-status='{shown}']", timeout=20000)
            reference = await page.inner_text("#reference")
        finally:
            await browser.close()

    # The shop showed what the database holds.
    async with sessionmaker() as db:
        order = await db.scalar(select(Order).where(Order.reference == reference.split(" ")[0]))
    assert order is not None
    assert order.status == shown
