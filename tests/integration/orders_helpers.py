"""Helpers for tests that need products and orders (through the API, as a storefront would)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ORDER_TABLES = ("orders", "order_lines", "order_transitions", "idempotency_keys")


async def put_product(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sku: str,
    unit_amount: int,
    *,
    currency: str = "EUR",
    active: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    response = await client.put(
        f"/products/{sku}",
        json={
            "name": name or f"Product {sku}",
            "unit_amount": unit_amount,
            "currency": currency,
            "active": active,
        },
        headers=admin_headers,
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def order_body(items: list[tuple[str, int]], currency: str = "EUR", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity in items],
        "customer": {"name": "Camille Martin", "email": "camille@example.com"},
        "currency": currency,
    }
    body.update(extra)
    return body


async def create_order(
    client: httpx.AsyncClient, items: list[tuple[str, int]], currency: str = "EUR"
) -> dict[str, Any]:
    response = await client.post("/orders", json=order_body(items, currency))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def row_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        counts = {}
        for table in ORDER_TABLES:
            counts[table] = int((await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())  # noqa: S608
        return counts


NO_ROWS = dict.fromkeys(ORDER_TABLES, 0)
