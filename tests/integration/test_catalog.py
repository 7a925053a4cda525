"""Catalog: public list of active products, operator upsert, demo seed."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.repository import DEMO_PRODUCTS, seed_demo_products
from app.models import Product
from tests.integration.orders_helpers import put_product

PRODUCT = {"name": "Espresso beans", "description": "Medium roast", "unit_amount": 2450, "currency": "EUR"}


async def test_put_creates_then_replaces(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    created = await client.put("/products/espresso-1kg", json=PRODUCT, headers=admin_headers)
    assert created.status_code == 201
    assert created.json() == {
        "sku": "espresso-1kg",
        "name": "Espresso beans",
        "description": "Medium roast",
        "unit_amount": 2450,
        "amount": "24.50",
        "currency": "EUR",
        "active": True,
    }

    updated = await client.put(
        "/products/espresso-1kg",
        json={**PRODUCT, "unit_amount": 2600, "name": "Espresso"},
        headers=admin_headers,
    )
    assert updated.status_code == 200
    assert updated.json()["unit_amount"] == 2600
    assert updated.json()["amount"] == "26.00"

    listed = (await client.get("/products")).json()["items"]
    assert [(p["sku"], p["name"], p["unit_amount"]) for p in listed] == [("espresso-1kg", "Espresso", 2600)]


async def test_list_shows_active_products_only_sorted_by_name(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client, admin_headers, "b-kettle", 6900, name="Kettle")
    await put_product(client, admin_headers, "a-zebra", 100, name="Zebra mug")
    await put_product(client, admin_headers, "c-beans", 2450, name="Beans")
    await put_product(client, admin_headers, "d-hidden", 500, name="Hidden", active=False)

    response = await client.get("/products")
    assert response.status_code == 200
    assert [p["sku"] for p in response.json()["items"]] == ["c-beans", "b-kettle", "a-zebra"]

    # Deactivating removes it from the list; reactivating brings it back.
    await put_product(client, admin_headers, "b-kettle", 6900, name="Kettle", active=False)
    assert [p["sku"] for p in (await client.get("/products")).json()["items"]] == ["c-beans", "a-zebra"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic", "empty"],
)
async def test_put_requires_operator_key(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], headers: dict[str, str]
) -> None:
    response = await client.put("/products/espresso-1kg", json=PRODUCT, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    async with sessionmaker() as session:
        assert (await session.scalars(select(Product))).all() == []


@pytest.mark.parametrize(
    ("sku", "changes", "field"),
    [
        ("-leading-dash", {}, "path.sku"),
        ("a" * 65, {}, "path.sku"),
        ("has space", {}, "path.sku"),
        ("ok", {"unit_amount": 0}, "body.unit_amount"),
        ("ok", {"unit_amount": -100}, "body.unit_amount"),
        ("ok", {"unit_amount": 12.5}, "body.unit_amount"),
        ("ok", {"unit_amount": "2450"}, "body.unit_amount"),
        ("ok", {"unit_amount": 10**13}, "body.unit_amount"),
        ("ok", {"currency": "eur"}, "body.currency"),
        ("ok", {"currency": "USD"}, "body.currency"),
        ("ok", {"currency": "EURO"}, "body.currency"),
        ("ok", {"name": "  "}, "body.name"),
        ("ok", {"active": "yes"}, "body.active"),
        ("ok", {"price": 10}, "body.price"),
    ],
)
async def test_put_rejects_invalid_products(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    sku: str,
    changes: dict[str, object],
    field: str,
) -> None:
    response = await client.put(f"/products/{sku}", json={**PRODUCT, **changes}, headers=admin_headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]]
    async with sessionmaker() as session:
        assert (await session.scalars(select(Product))).all() == []


async def test_unsupported_currency_message_lists_supported_ones(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.put("/products/x", json={**PRODUCT, "currency": "USD"}, headers=admin_headers)
    [detail] = response.json()["error"]["details"]
    assert "unsupported currency 'USD'" in detail["message"]
    assert "EUR" in detail["message"] and "GBP" in detail["message"] and "PLN" in detail["message"]


@pytest.mark.parametrize("currency", ["EUR", "GBP", "PLN"])
async def test_supported_currencies(
    client: httpx.AsyncClient, admin_headers: dict[str, str], currency: str
) -> None:
    body = await put_product(client, admin_headers, f"sku-{currency}", 1999, currency=currency)
    assert (body["currency"], body["amount"]) == (currency, "19.99")


async def test_seed_demo_products_is_idempotent_and_keeps_operator_edits(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        assert await seed_demo_products(session) == len(DEMO_PRODUCTS)
    first_sku = str(DEMO_PRODUCTS[0]["sku"])
    await put_product(client, admin_headers, first_sku, 999, name="Edited by the operator")

    async with sessionmaker() as session, session.begin():
        assert await seed_demo_products(session) == 0

    products = (await client.get("/products")).json()["items"]
    assert len(products) == len(DEMO_PRODUCTS) >= 3
    assert {p["currency"] for p in products} == {"EUR"}
    edited = next(p for p in products if p["sku"] == first_sku)
    assert (edited["name"], edited["unit_amount"]) == ("Edited by the operator", 999)
