"""The operator console in Chromium, against `checkout demo` (the service, the provider simulator
and a real PostgreSQL): log in with the operator key, find the order in needs_review at the top
of the list, read its history, resolve it with a note; then "sync now" an order the provider paid
while its webhook was lost.

Chromium is Debian's /usr/bin/chromium, driven through Playwright's `executable_path`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.models import Order, OrderTransition, PaymentSession, TransitionSource
from app.payments import writer
from app.providers.base import PaymentSnapshot, PaymentStatus
from tests.browser.test_demo_checkout import CHROMIUM, CHROMIUM_ARGS, Demo, demo  # noqa: F401 - the fixture


async def _order_with_session(http: httpx.AsyncClient) -> tuple[uuid.UUID, str]:
    """An order and its Fintecture session, through the public API as a storefront makes them."""
    created = await http.post(
        "/orders",
        json={
            "items": [{"sku": "espresso-1kg", "quantity": 1}],
            "customer": {"name": "Camille Martin", "email": "camille@example.com"},
            "currency": "EUR",
        },
    )
    assert created.status_code == 201, created.text
    order = created.json()
    opened = await http.post(
        f"/orders/{order['id']}/payment-session",
        json={"provider": "fintecture"},
        headers={"Authorization": f"Bearer {order['access_token']}"},
    )
    assert opened.status_code == 201, opened.text
    return uuid.UUID(order["id"]), order["reference"]


async def _send_to_review(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> None:
    """The provider reports the payer sent less than the order's total: the writer flags it."""
    async with sm() as db:
        session = await db.scalar(select(PaymentSession).where(PaymentSession.order_id == order_id))
    assert session is not None
    short = PaymentSnapshot(
        provider="fintecture",
        provider_session_id=session.provider_session_id or "",
        status=PaymentStatus.SUCCEEDED,
        raw_status="payment_created",
        transfer_state="completed",
        amount=Decimal(session.amount - 100) / 100,
        currency=session.currency,
        communication=session.communication,
    )
    async with transaction(sm) as db:
        await writer.apply(
            db, session.id, short, source=TransitionSource.WEBHOOK, observed_at=datetime.now(UTC)
        )


async def test_an_operator_resolves_a_review_and_syncs_an_order_in_the_browser(
    demo: Demo,  # noqa: F811 - the fixture imported above
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright

    # `checkout demo` runs in tmp_path and keeps its generated operator key under .data/demo.
    admin_key = (tmp_path / ".data" / "demo" / "admin_api_key").read_text().strip()
    async with httpx.AsyncClient(base_url=demo.url, timeout=20) as http:
        review_id, review_ref = await _order_with_session(http)
        await _send_to_review(sessionmaker, review_id)
        await _order_with_session(http)  # a newer order, listed after the review all the same

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{demo.url}/admin/orders")
                await page.wait_for_url("**/admin/login?next=**")
                await page.fill("#key", admin_key)
                await page.click("#login")
                await page.wait_for_url("**/admin/orders")
                first = page.locator("#orders tbody tr").first
                assert await first.get_attribute("data-status") == "needs_review"
                await first.locator("a").click()
                await page.wait_for_url(f"**/admin/orders/{review_id}")
                assert await page.inner_text("#reference") == review_ref
                history = await page.inner_text("#history")
                assert "needs_review" in history and "webhook" in history and "amount mismatch" in history
                await page.select_option("#resolve-to", "paid")
                await page.fill("#resolve-note", "Payer short by 1.00 EUR; <b>accepted</b> by phone")
                await page.click("#resolve")
                await page.wait_for_selector("#notice")
                await page.wait_for_selector("#order-status[data-status='paid']")
                assert "Payer short by 1.00 EUR; <b>accepted</b> by phone" in await page.inner_text(
                    "#history"
                )

                # The provider is paid while its webhook is lost and the payer never comes back.
                synced_id, synced_ref = await _order_with_session(http)
                async with sessionmaker() as db:
                    provider_id = await db.scalar(
                        select(PaymentSession.provider_session_id).where(PaymentSession.order_id == synced_id)
                    )
                async with httpx.AsyncClient(base_url=demo.simulator_url, timeout=20) as sim:
                    assert (await sim.post("/_sim/faults", json={"webhook_drop": {"count": 1}})).is_success
                    done = await sim.post(
                        f"/_sim/sessions/{provider_id}/complete", json={"outcome": "confirm"}
                    )
                    assert done.is_success, done.text
                await page.goto(f"{demo.url}/admin/orders?reference={synced_ref}")
                await page.click(f"text={synced_ref}")
                await page.wait_for_url(f"**/admin/orders/{synced_id}")
                assert await page.get_attribute("#order-status", "data-status") == "awaiting_payment"
                await page.click("#sync")
                await page.wait_for_selector("#notice")
                await page.wait_for_selector("#order-status[data-status='paid']")
            finally:
                await browser.close()

    async with sessionmaker() as db:
        resolved = await db.get(Order, review_id)
        synced = await db.get(Order, synced_id)
        assert resolved is not None and synced is not None
        assert (resolved.status, synced.status) == ("paid", "paid")
        last = await db.scalar(
            select(OrderTransition)
            .where(OrderTransition.order_id == review_id)
            .order_by(OrderTransition.id.desc())
            .limit(1)
        )
        assert last is not None
        assert (last.from_status, last.to_status, last.source, last.note) == (
            "needs_review",
            "paid",
            "operator",
            "Payer short by 1.00 EUR; <b>accepted</b> by phone",
        )
        paid_by = await db.scalar(
            select(OrderTransition.source).where(
                OrderTransition.order_id == synced_id, OrderTransition.to_status == "paid"
            )
        )
        assert paid_by == "operator"
