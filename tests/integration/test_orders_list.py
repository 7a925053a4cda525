"""GET /orders for operators: key required, status filter, keyset pagination newest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Order
from tests.integration.orders_helpers import create_order, put_product

BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def _insert_orders(
    sessionmaker: async_sessionmaker[AsyncSession], specs: list[tuple[int, str]]
) -> list[Order]:
    """Orders created `minutes` after BASE with `status`; equal minutes give equal created_at."""
    orders = [
        Order(
            id=uuid.uuid4(),
            reference="ORD-T" + uuid.uuid4().hex[:12].upper(),
            status=status,
            currency="EUR",
            total_amount=1000 + index,
            customer_name=f"Customer {index}",
            customer_email=f"c{index}@example.com",
            access_token_hash="0" * 64,
            created_at=BASE + timedelta(minutes=minutes),
            updated_at=BASE + timedelta(minutes=minutes),
        )
        for index, (minutes, status) in enumerate(specs)
    ]
    async with sessionmaker() as session, session.begin():
        session.add_all(orders)
    return orders


def _newest_first(orders: list[Order]) -> list[str]:
    return [str(o.id) for o in sorted(orders, key=lambda o: (o.created_at, o.id), reverse=True)]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Token test-admin-key-0123456789abcdef"}],
    ids=["none", "wrong", "other-scheme"],
)
async def test_operator_key_is_required(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/orders", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthorized"
    assert "ADMIN_API_KEY" in error["message"]


async def test_an_order_token_is_not_an_operator_key(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client, admin_headers, "beans", 1250)
    order = await create_order(client, [("beans", 1)])
    response = await client.get("/orders", headers={"Authorization": f"Bearer {order['access_token']}"})
    assert response.status_code == 401


async def test_lists_newest_first_with_summaries(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client, admin_headers, "beans", 1250)
    first = await create_order(client, [("beans", 1)])
    second = await create_order(client, [("beans", 3)])
    response = await client.get("/orders", headers=admin_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [o["id"] for o in body["items"]] == [second["id"], first["id"]]
    assert body["items"][0] == {
        "id": second["id"],
        "reference": second["reference"],
        "status": "pending",
        "currency": "EUR",
        "total_amount": 3750,
        "amount": "37.50",
        "customer_name": "Camille Martin",
        "customer_email": "camille@example.com",
        "created_at": second["created_at"],
        "updated_at": second["updated_at"],
    }


async def test_pagination_walks_every_order_once_even_with_equal_timestamps(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Seven orders share one timestamp: the id breaks the tie, so page boundaries inside the group are exact.
    specs = [(0, "pending")] * 3 + [(5, "paid")] * 7 + [(9, "failed")] * 2 + [(12, "pending")]
    orders = await _insert_orders(sessionmaker, specs)

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/orders", params=params, headers=admin_headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 3
        seen += [o["id"] for o in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == _newest_first(orders)
    assert pages == 5  # 13 orders, 3 per page


async def test_new_orders_do_not_shift_later_pages(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    orders = await _insert_orders(sessionmaker, [(m, "pending") for m in range(6)])
    page1 = (await client.get("/orders", params={"limit": 3}, headers=admin_headers)).json()
    await _insert_orders(sessionmaker, [(60, "pending")])  # arrives between two page reads
    page2 = (
        await client.get(
            "/orders", params={"limit": 3, "cursor": page1["next_cursor"]}, headers=admin_headers
        )
    ).json()
    expected = _newest_first(orders)
    assert [o["id"] for o in page1["items"]] == expected[:3]
    assert [o["id"] for o in page2["items"]] == expected[3:]
    assert page2["next_cursor"] is None


async def test_status_filter(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    orders = await _insert_orders(
        sessionmaker, [(1, "pending"), (2, "paid"), (3, "paid"), (4, "needs_review"), (5, "paid")]
    )
    paid = [o for o in orders if o.status == "paid"]

    response = await client.get("/orders", params={"status": "paid"}, headers=admin_headers)
    assert [o["id"] for o in response.json()["items"]] == _newest_first(paid)

    page1 = (await client.get("/orders", params={"status": "paid", "limit": 2}, headers=admin_headers)).json()
    page2 = (
        await client.get(
            "/orders",
            params={"status": "paid", "limit": 2, "cursor": page1["next_cursor"]},
            headers=admin_headers,
        )
    ).json()
    assert [o["id"] for o in page1["items"] + page2["items"]] == _newest_first(paid)
    assert page2["next_cursor"] is None

    empty = await client.get("/orders", params={"status": "refunded"}, headers=admin_headers)
    assert empty.json() == {"items": [], "next_cursor": None}


async def test_reference_filter(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    orders = await _insert_orders(sessionmaker, [(1, "pending"), (2, "paid")])
    response = await client.get("/orders", params={"reference": orders[0].reference}, headers=admin_headers)
    assert [o["id"] for o in response.json()["items"]] == [str(orders[0].id)]


async def test_default_limit_is_20(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _insert_orders(sessionmaker, [(m, "pending") for m in range(21)])
    body = (await client.get("/orders", headers=admin_headers)).json()
    assert len(body["items"]) == 20
    assert body["next_cursor"]


@pytest.mark.parametrize(
    ("params", "field", "code"),
    [
        ({"status": "shipped"}, "query.status", "validation_error"),
        ({"status": "PAID"}, "query.status", "validation_error"),
        ({"limit": 0}, "query.limit", "validation_error"),
        ({"limit": 101}, "query.limit", "validation_error"),
        ({"limit": "ten"}, "query.limit", "validation_error"),
        ({"cursor": "garbage!"}, "query.cursor", "invalid_cursor"),
        ({"cursor": "MjAyNi0xMS0wMQ"}, "query.cursor", "invalid_cursor"),  # a date without an id
        ({"cursor": "x" * 201}, "query.cursor", "validation_error"),
    ],
)
async def test_invalid_query_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, Any], field: str, code: str
) -> None:
    response = await client.get("/orders", params=params, headers=admin_headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert field in [d["field"] for d in error["details"]]
