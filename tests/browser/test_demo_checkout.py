"""The README's run command, driven by a real browser: `checkout demo` -> shop -> choose a provider
-> Pay by bank -> the simulated provider page -> back to the shop, which shows the order as the
database has it; with each provider.

Needs Chromium at /usr/bin/chromium (Debian's `chromium`; `.ci/run` installs it). Playwright drives
it through `executable_path` and never downloads a browser of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
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


@dataclass(frozen=True)
class Demo:
    url: str
    simulator_url: str


@pytest.fixture
def demo(database_url: str, clean_database: str, tmp_path: Path) -> Iterator[Demo]:
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
        yield Demo(url, f"http://127.0.0.1:{simulator_port}")
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
    demo: Demo,
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
            await page.goto(f"{demo.url}/")
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


@dataclass
class Watched:
    """What the browser reported while a test drove it: console errors and answers >= 400."""

    console_errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@asynccontextmanager
async def shop_page(demo: Demo) -> AsyncIterator[tuple[Any, Watched]]:
    from playwright.async_api import async_playwright

    watched = Watched()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on(
                "console",
                lambda message: (
                    watched.console_errors.append(f"{message.text} ({message.location.get('url')})")
                    if message.type == "error"
                    else None
                ),
            )
            page.on(
                "response",
                lambda response: (
                    watched.failed.append(f"{response.status} {response.url}")
                    if response.status >= 400
                    else None
                ),
            )
            yield page, watched
        finally:
            await browser.close()


async def _basket(page: Any, demo: Demo, quantities: list[int]) -> None:
    await page.goto(f"{demo.url}/")
    await page.wait_for_selector("#products input")
    inputs = page.locator("#products input")
    for index, quantity in enumerate(quantities):
        await inputs.nth(index).fill(str(quantity))


async def _place_order(page: Any) -> dict[str, Any]:
    """Press Pay by bank; the order the API created (as the page received it).

    The answer is read as it passes to the page: the page leaves for the bank at once, and a
    browser forgets the body of a response whose page has gone.
    """
    created: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def pass_through(route: Any) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        answer = await route.fetch()
        order = await answer.json()
        await route.fulfill(response=answer)
        if not created.done():
            created.set_result(order)

    await page.route("**/orders", pass_through)
    try:
        await page.click("#pay")
        return await asyncio.wait_for(created, timeout=30)
    finally:
        await page.unroute("**/orders", pass_through)


async def _status_text(page: Any) -> str:
    return " ".join(
        [await page.inner_text("#status"), await page.inner_text("#explain"), await page.inner_text("#next")]
    )


async def test_the_result_page_shows_the_order_as_the_api_has_it_never_the_url(
    demo: Demo, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with shop_page(demo) as (page, watched):
        # The quantity field shows the API's limit.
        await _basket(page, demo, [2, 1])
        assert await page.get_attribute("#products input >> nth=0", "max") == "10"
        assert await page.inner_text("#max-quantity") == "10"
        await page.check("input[name=provider][value=fintecture]")
        order = await _place_order(page)
        await page.wait_for_url("**/connect/v2/**")

        # The payer leaves the bank's page without paying: no "waiting for you at your bank".
        await page.click("button[value=abandon]")
        await page.wait_for_url("**/checkout/result**")
        await page.wait_for_selector("#status[data-status='awaiting_payment']")
        shown = await _status_text(page)
        assert "Payment not completed" in shown and "No money was taken" in shown
        assert "waiting for you" not in shown.lower() and "authorise the transfer at your bank" not in shown
        assert await page.is_visible("#resume-link")

        # A forged return saying "paid" shows what the API says of the order instead.
        await page.goto(f"{demo.url}/checkout/result?order_id={order['id']}&status=paid")
        await page.wait_for_selector("#status[data-status='awaiting_payment']")
        assert "Paid" not in await page.inner_text("#status")

        # The order's lines and total, as the API priced them.
        await page.wait_for_selector("#lines:not([hidden])")
        rows = [await row.inner_text() for row in await page.query_selector_all("#lines tbody tr")]
        assert [row.split("\t")[:2] for row in rows] == [
            [line["name"], str(line["quantity"])] for line in order["lines"]
        ]
        assert [line["quantity"] for line in order["lines"]] == [2, 1]
        assert await page.inner_text("#order-total") == f"{order['amount']} EUR"
        assert await page.inner_text("#reference") == order["reference"]

        # Resuming the payment, leaving it pending at the bank: "processing", which updates by itself.
        await page.click("#resume-link")
        await page.wait_for_url("**/connect/v2/**")
        await page.click("button[value=pending]")
        await page.wait_for_url("**/checkout/result**")
        await page.wait_for_selector("#status[data-status='processing']", timeout=20000)
        assert "updates by itself" in await _status_text(page)
        # The bank settles the transfer (the simulator's clock moves past its settling time); the
        # page, never reloaded, follows the order to paid.
        async with httpx.AsyncClient() as http:
            moved = await http.post(f"{demo.simulator_url}/_sim/clock/advance", json={"seconds": 30})
            assert moved.status_code == 200, moved.text
        await page.wait_for_selector("#status[data-status='paid']", timeout=30000)
        assert "tone-good" in (await page.get_attribute("#status", "class") or "")

        # The icon the page names is served.
        icon = await page.get_attribute("link[rel=icon]", "href")
        assert icon
        for path in (icon, "/favicon.ico"):
            answer = await page.request.get(f"{demo.url}{path}")
            assert answer.status == 200 and answer.headers["content-type"].startswith("image/"), path
        assert not watched.console_errors, watched.console_errors
        assert not watched.failed, watched.failed

    async with sessionmaker() as db:
        stored = await db.scalar(select(Order).where(Order.id == uuid.UUID(order["id"])))
    assert stored is not None and stored.status == "paid"


async def test_too_many_units_are_refused_by_the_api_with_a_visible_message(
    demo: Demo, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with shop_page(demo) as (page, watched):
        await _basket(page, demo, [50])
        async with page.expect_response(lambda r: r.url.endswith("/orders")) as info:
            await page.click("#pay")
        assert (await info.value).status == 422
        await page.wait_for_selector("#error:has-text('at most 10 per line')")
        assert (await page.inner_text("#error")).startswith("Order items are invalid: line 1 (")
        assert await page.get_attribute("#products input >> nth=0", "aria-invalid") == "true"
        assert page.url == f"{demo.url}/"  # still in the shop
        assert watched.failed == [f"422 {demo.url}/orders"]
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Order)) == 0


async def test_a_link_that_matches_no_payment_says_so_and_leads_back_to_the_shop(demo: Demo) -> None:
    async with shop_page(demo) as (page, _watched):
        answer = await page.goto(f"{demo.url}/callback?state=forged&session_id=forged")
        assert answer is not None and answer.status == 400
        first = await page.inner_text("p >> nth=0")
        assert first[0].isupper(), first
        await page.click("text=Back to the shop")
        await page.wait_for_url(f"{demo.url}/")
        await page.wait_for_selector("#products input")
