"""The operator console over HTTP (the app in process, real PostgreSQL): the login and its cookie,
CSRF on every action, nothing written when refused, the pages escaped and under a strict policy."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.admin.auth import LOGIN_FAILURES
from app.config import Settings
from app.db import transaction
from app.main import create_app
from app.models import Order, OrderTransition, OutboundEvent, PaymentSession, ProviderEvent
from app.providers.base import PaymentStatus
from app.providers.fintecture.settings import FintectureSettings
from tests.conftest import ADMIN_KEY
from tests.integration.test_writer import apply, make_order, snapshot_for


async def _in_review(sm: async_sessionmaker[AsyncSession]) -> tuple[uuid.UUID, uuid.UUID]:
    order_id, [sid] = await make_order(sm)
    short = await snapshot_for(
        sm, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed", amount=Decimal("200.00")
    )
    await apply(sm, sid, short)
    return order_id, sid


async def _written(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> tuple[str, int, int]:
    async with sm() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        transitions = await db.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id == order_id)
        )
        events = await db.scalar(select(func.count()).select_from(OutboundEvent))
        return order.status, int(transitions or 0), int(events or 0)


async def _login(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/admin/login", data={"key": ADMIN_KEY, "next": "/admin/orders"})


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
async def operator(client: httpx.AsyncClient) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client logged in to the console, and its CSRF token."""
    assert (await _login(client)).status_code == 303
    page = await client.get("/admin/orders")
    assert page.status_code == 200
    yield client, _csrf(page.text)


async def test_login_exchanges_the_key_for_a_strict_http_only_signed_cookie(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/admin/login")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy

    response = await _login(client)
    assert response.status_code == 303 and response.headers["location"] == "/admin/orders"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("checkout_admin=")
    flags = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= set(flags)
    assert flags["samesite"].strip().lower() == "samesite=strict"
    assert flags["path"].strip() == "Path=/admin"
    assert int(flags["max-age"].split("=")[1]) == 8 * 3600
    # PUBLIC_URL is http here (tests, the demo on 127.0.0.1): a Secure cookie would never come back.
    assert "secure" not in flags
    assert ADMIN_KEY not in cookie


async def test_over_https_the_cookie_is_secure(settings: Settings) -> None:
    https = settings.model_copy(update={"public_url": "https://checkout.test"})
    application: FastAPI = create_app(https, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="https://checkout.test"
        ) as client,
    ):
        response = await _login(client)
        assert response.status_code == 303
        assert "secure" in [p.strip().lower() for p in response.headers["set-cookie"].split(";")]


async def test_a_wrong_key_gets_no_session_and_repeated_failures_are_throttled(
    client: httpx.AsyncClient,
) -> None:
    for wrong in ("", "wrong", ADMIN_KEY + "x", ADMIN_KEY[:-1]):
        response = await client.post("/admin/login", data={"key": wrong})
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
    assert (await client.get("/admin/orders")).status_code == 303  # still logged out
    for _ in range(LOGIN_FAILURES - 4):
        await client.post("/admin/login", data={"key": "wrong"})
    throttled = await client.post("/admin/login", data={"key": ADMIN_KEY})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert "set-cookie" not in throttled.headers


async def test_pages_without_a_session_redirect_to_the_login(client: httpx.AsyncClient) -> None:
    for path in ("/admin/orders?status=paid", f"/admin/orders/{uuid.uuid4()}", "/admin/payouts"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login?next=%2Fadmin%2F")
    # A forged or tampered cookie is no session either.
    client.cookies.set("checkout_admin", "eyJjc3JmIjoieCJ9.forged.signature", path="/admin")
    assert (await client.get("/admin/orders")).status_code == 303
    # The login only ever sends back into the console.
    for target in ("https://evil.example/", "//evil.example/admin/", "/admin\\..\\x"):
        response = await client.post("/admin/login", data={"key": ADMIN_KEY, "next": target})
        assert response.headers["location"] == "/admin/orders"


def _actions(order_id: uuid.UUID) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/admin/orders/{order_id}/review/resolve", {"to": "paid", "note": "forged"}),
        (f"/admin/orders/{order_id}/refunds", {"amount": "1.00", "idempotency_key": "console-" + "a" * 20}),
        (f"/admin/orders/{order_id}/sync", {}),
        ("/admin/events/inbound/1/replay", {"back": f"/admin/orders/{order_id}"}),
        ("/admin/events/outbound/evt_1/replay", {"back": f"/admin/orders/{order_id}"}),
        ("/admin/logout", {}),
    ]


async def test_actions_without_a_session_are_refused_and_write_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, _ = await _in_review(sessionmaker)
    before = await _written(sessionmaker, order_id)
    for path, data in _actions(order_id):
        response = await client.post(path, data={**data, "csrf_token": "anything"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "console_session_required"
    assert await _written(sessionmaker, order_id) == before


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
async def test_actions_with_a_wrong_csrf_token_are_refused_and_write_nothing(
    operator: tuple[httpx.AsyncClient, str], sessionmaker: async_sessionmaker[AsyncSession], token: str | None
) -> None:
    client, real = operator
    order_id, _ = await _in_review(sessionmaker)
    before = await _written(sessionmaker, order_id)
    for path, data in _actions(order_id):
        form = dict(data) if token is None else {**data, "csrf_token": token}
        response = await client.post(path, data=form)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "csrf_failed"
        # The token in a query string or a JSON body is not the form's.
        assert (await client.post(f"{path}?csrf_token={real}", data=data)).status_code == 403
        assert (await client.post(path, json={**data, "csrf_token": real})).status_code == 403
    assert await _written(sessionmaker, order_id) == before
    assert (await client.get("/admin/orders")).status_code == 200  # still logged in: logout was refused too


async def test_an_operator_resolves_a_review_from_the_order_page(
    operator: tuple[httpx.AsyncClient, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client, _ = operator
    order_id, _ = await _in_review(sessionmaker)
    page = await client.get(f"/admin/orders/{order_id}")
    assert page.status_code == 200 and 'id="resolve-form"' in page.text
    csrf = _csrf(page.text)
    invalid = await client.post(
        f"/admin/orders/{order_id}/review/resolve", data={"csrf_token": csrf, "to": "refunded", "note": "x"}
    )
    assert invalid.status_code == 303 and "error=invalid_resolution" in invalid.headers["location"]
    assert (await _written(sessionmaker, order_id))[0] == "needs_review"

    done = await client.post(
        f"/admin/orders/{order_id}/review/resolve",
        data={"csrf_token": csrf, "to": "failed", "note": "Payer paid 200.00 of 273.50; returned"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/admin/orders/{order_id}?notice=review_resolved"
    async with sessionmaker() as db:
        row = await db.scalar(
            select(OrderTransition)
            .where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id.desc())
            .limit(1)
        )
    assert row is not None
    assert (row.from_status, row.to_status, row.source, row.note) == (
        "needs_review",
        "failed",
        "operator",
        "Payer paid 200.00 of 273.50; returned",
    )
    shown = await client.get(done.headers["location"])
    assert "Review resolved." in shown.text and "Payer paid 200.00 of 273.50; returned" in shown.text
    again = await client.post(
        f"/admin/orders/{order_id}/review/resolve", data={"csrf_token": csrf, "to": "paid", "note": "late"}
    )
    assert "error=review_not_open" in again.headers["location"]


async def test_the_order_page_escapes_what_customers_and_providers_sent(
    operator: tuple[httpx.AsyncClient, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client, _ = operator
    order_id, sid = await _in_review(sessionmaker)
    async with transaction(sessionmaker) as db:
        order = await db.get(Order, order_id)
        session = await db.get(PaymentSession, sid)
        assert order is not None and session is not None
        order.customer_name = '<script>alert("name")</script>'
        db.add(
            ProviderEvent(
                provider="fintecture",
                delivery_id="d-1",
                event_type="payment.<img src=x onerror=alert(1)>",
                provider_session_id=session.provider_session_id,
                content_type="application/json",
                raw_body=b'{"status": "</pre><script>alert(2)</script>"}',
                payload={"status": "</pre><script>alert(2)</script>"},
            )
        )
    page = await client.get(f"/admin/orders/{order_id}")
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in page.text
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page.text  # the raw body, escaped
    assert "script-src" not in page.headers["content-security-policy"]
    # The history with its sources, the session's raw provider status.
    assert 'data-source="webhook" data-to="needs_review"' in page.text
    assert "payment_created" in page.text


async def test_the_order_list_puts_reviews_first_and_checks_its_filters(
    operator: tuple[httpx.AsyncClient, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    client, _ = operator
    review_id, _ = await _in_review(sessionmaker)
    newer_id, _ = await make_order(sessionmaker)  # awaiting_payment, created after
    page = await client.get("/admin/orders")
    statuses = re.findall(r'<tr data-status="([a-z_]+)">', page.text)
    assert statuses[0] == "needs_review" and "awaiting_payment" in statuses
    only = await client.get("/admin/orders", params={"status": "awaiting_payment", "provider": "fintecture"})
    assert str(newer_id) in only.text and str(review_id) not in only.text
    for bad in ({"status": "nope"}, {"from": "yesterday"}, {"page": "0"}, {"provider": "<x>"}):
        refused = await client.get("/admin/orders", params=bad)
        assert refused.status_code == 422, bad
        assert "<x>" not in refused.text
    assert (await client.get(f"/admin/orders/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/admin/orders/not-an-id")).status_code == 404
    assert (await client.get("/admin/payouts")).status_code == 200


async def test_the_console_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/admin")]
    assert "/orders/{order_id}/review/resolve" in paths
