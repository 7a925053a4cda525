"""Input PostgreSQL cannot store, or that no client sends in good faith, is refused at the edge:
a 4xx in the one error shape, and not a row written. Each case once ended in a plain-text 500."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import PaymentSession, Product, Refund
from tests.integration.orders_helpers import NO_ROWS, create_order, order_body, put_product, row_counts

ADDRESS = {"street": "Rue de Rivoli", "number": "12", "zip": "75004", "city": "Paris", "country": "FR"}


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in [detail["field"] for detail in error["details"]], error
    return error


@pytest.fixture
async def beans(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await put_product(client, admin_headers, "beans", 1250, name="Beans")


def _customer(**changes: Any) -> dict[str, Any]:
    customer: dict[str, Any] = {
        "name": "Camille Martin",
        "email": "camille@example.com",
        "address": dict(ADDRESS),
    }
    for key, value in changes.items():
        if key in ADDRESS or key == "complement":
            customer["address"][key] = value
        else:
            customer[key] = value
    return customer


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Camille\x00Martin"}, "body.customer.name"),
        ({"company": "Atelier\x00Martin"}, "body.customer.company"),
        ({"street": "Rue\x00de Rivoli"}, "body.customer.address.street"),
        ({"number": "1\x002"}, "body.customer.address.number"),
        ({"complement": "Bât\x00B"}, "body.customer.address.complement"),
        ({"zip": "75\x00004"}, "body.customer.address.zip"),
        ({"city": "Pa\x00ris"}, "body.customer.address.city"),
        ({"name": "Camille\x1bMartin"}, "body.customer.name"),  # ESC: a terminal escape
        ({"name": "Camille\nMartin"}, "body.customer.name"),
        ({"name": "Camille\u0085Martin"}, "body.customer.name"),  # C1 control inside the text
        ({"name": "C" * 201}, "body.customer.name"),  # orders.customer_name is VARCHAR(200)
        ({"company": "C" * 201}, "body.customer.company"),
        ({"street": "S" * 201}, "body.customer.address.street"),
        ({"city": "C" * 101}, "body.customer.address.city"),
    ],
)
async def test_order_with_unstorable_customer_text_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    beans: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    changes: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/orders", json=order_body([("beans", 1)], customer=_customer(**changes)))
    assert_error(response, 422, "validation_error", field)
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_order_with_plain_unicode_text_is_accepted(client: httpx.AsyncClient, beans: None) -> None:
    customer = _customer(name="Zoë Ó'Brien-Łukasiewicz 😀", company="Café « Déjà vu »", city="Saint-Étienne")
    response = await client.post("/orders", json=order_body([("beans", 1)], customer=customer))
    assert response.status_code == 201, response.text
    assert response.json()["customer"]["name"] == "Zoë Ó'Brien-Łukasiewicz 😀"


async def test_a_lone_surrogate_in_a_json_body_is_refused(
    client: httpx.AsyncClient, beans: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    raw = json.dumps(order_body([("beans", 1)])).replace("Camille Martin", "Camille \\ud800 Martin")
    response = await client.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "validation_error", "body.customer.name")
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_a_body_nested_20000_deep_is_refused(
    client: httpx.AsyncClient, beans: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    raw = '{"items": ' + "[" * 20_000 + "]" * 20_000 + "}"
    response = await client.post("/orders", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_request")
    assert await row_counts(sessionmaker) == NO_ROWS


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Espresso\x00beans"}, "body.name"),
        ({"name": "E" * 201}, "body.name"),  # products.name is VARCHAR(200)
        ({"description": "Single\x00origin"}, "body.description"),
        ({"description": "Single\x07origin"}, "body.description"),
        ({"description": "D" * 2001}, "body.description"),
    ],
)
async def test_product_with_unstorable_text_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    changes: dict[str, Any],
    field: str,
) -> None:
    body = {"name": "Espresso beans", "description": "", "unit_amount": 2450, "currency": "EUR", **changes}
    response = await client.put("/products/espresso", json=body, headers=admin_headers)
    assert_error(response, 422, "validation_error", field)
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Product)) == 0


async def test_a_product_description_may_span_lines(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = {
        "name": "Espresso",
        "description": "Roasted weekly.\n\tSingle origin.",
        "unit_amount": 2450,
        "currency": "EUR",
    }
    response = await client.put("/products/espresso", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == "Roasted weekly.\n\tSingle origin."


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"reference": "\x00"}, "query.reference"),
        ({"reference": "ORD-\x00ABC"}, "query.reference"),
        ({"reference": "R" * 33}, "query.reference"),  # orders.reference is VARCHAR(32)
        ({"cursor": "abc\x00"}, "query.cursor"),
    ],
)
async def test_order_list_with_unstorable_query_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get("/orders", params=params, headers=admin_headers)
    assert_error(response, 422, "validation_error", field)


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 once in UTC
    ],
)
async def test_a_cursor_outside_the_representable_dates_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], timestamp: str
) -> None:
    cursor = base64.urlsafe_b64encode(f"{timestamp}|{uuid.uuid4()}".encode()).decode().rstrip("=")
    response = await client.get("/orders", params={"cursor": cursor}, headers=admin_headers)
    assert_error(response, 422, "invalid_cursor", "query.cursor")


async def test_a_cursor_in_another_zone_still_pages(
    client: httpx.AsyncClient, admin_headers: dict[str, str], beans: None
) -> None:
    first = await create_order(client, [("beans", 1)])
    # Far in the future, written at +14:00: every order is older.
    cursor = base64.urlsafe_b64encode(f"9000-01-01T00:00:00+14:00|{uuid.uuid4()}".encode()).decode()
    response = await client.get("/orders", params={"cursor": cursor}, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [first["id"]]


async def _payment_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as db:
        return {
            table: int(await db.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608 - fixed names
            for table in ("payment_sessions", "order_transitions", "provider_events")
        }


@pytest.mark.parametrize(
    "query",
    [
        "state=ab%00cd&session_id=5d1f4a",
        "state=abcd&session_id=5d1f%00",
        "state=abcd&id_payment=42%00",
        "state=abcd&session_id=5d1f&status=payment%1Bcreated",
        "state=abcd&session_id=5d1f&x%00y=1",
        "state=" + "s" * 129 + "&session_id=5d1f",  # payment_sessions.state_token is VARCHAR(128)
        "state=abcd&session_id=" + "i" * 513,
        "&".join(f"p{n}=v" for n in range(40)),
    ],
)
async def test_callback_with_a_query_that_is_not_plain_text_is_422_and_writes_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], query: str
) -> None:
    before = await _payment_rows(sessionmaker)
    response = await client.get(f"/callback?{query}")
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"].startswith("query")
    assert await _payment_rows(sessionmaker) == before


async def test_callback_that_matches_nothing_still_gets_its_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/callback?state=abcd&session_id=5d1f")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "one lamp\x00returned"}, "body.reason"),
        ({"reason": "R" * 141}, "body.reason"),  # refunds.reason is VARCHAR(140)
    ],
)
async def test_refund_with_unstorable_reason_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    beans: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    field: str,
) -> None:
    order = await create_order(client, [("beans", 1)])
    response = await client.post(f"/orders/{order['id']}/refunds", json=body, headers=admin_headers)
    assert_error(response, 422, "validation_error", field)
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Refund)) == 0
        assert await db.scalar(select(func.count()).select_from(PaymentSession)) == 0
