"""A plain POST /orders is answered before FastAPI's routing (app/orders/create_route.py): every way an
order can be sent gets the answer the route gives, the body arriving in pieces, a browser on another
origin and a client that hangs up included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import Order, OrderLine
from app.providers.fintecture.settings import FintectureSettings
from tests.integration.orders_helpers import NO_ROWS, order_body, put_product, row_counts
from tests.support.asgi import post_then_hang_up

SHOP = "https://shop.example"


@pytest.fixture
async def catalog(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await put_product(client, admin_headers, "beans", 1250, name="Beans")
    await put_product(client, admin_headers, "kettle", 2475, name="Kettle")


def _shape(order: dict[str, Any]) -> dict[str, Any]:
    """What two answers for the same basket share: everything but the ids, tokens and times."""
    varying = {"id", "reference", "access_token", "created_at", "updated_at"}
    return {key: value for key, value in order.items() if key not in varying}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"],
)
async def test_every_json_content_type_gets_the_same_order(
    client: httpx.AsyncClient,
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    content_type: str,
) -> None:
    body = order_body([("beans", 2), ("kettle", 1)])
    plain = await client.post("/orders", json=body)
    raw = httpx.Request("POST", "/", json=body).content
    other = await client.post("/orders", content=raw, headers={"Content-Type": content_type})
    assert plain.status_code == other.status_code == 201, (plain.text, other.text)
    assert plain.headers["content-type"] == other.headers["content-type"] == "application/json"
    assert _shape(plain.json()) == _shape(other.json())
    assert plain.json()["total_amount"] == 2 * 1250 + 2475
    counts = await row_counts(sessionmaker)
    assert counts["orders"] == 2 and counts["order_lines"] == 4


async def test_an_order_sent_in_pieces_is_read_whole(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    raw = httpx.Request("POST", "/", json=order_body([("beans", 3), ("kettle", 2)])).content

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7):
            yield raw[start : start + 7]

    response = await client.post("/orders", content=pieces(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["total_amount"] == 3 * 1250 + 2 * 2475
    async with sessionmaker() as db:
        lines = (await db.scalars(select(OrderLine).order_by(OrderLine.position))).all()
    assert [(line.sku, line.quantity) for line in lines] == [("beans", 3), ("kettle", 2)]


async def test_a_client_that_hangs_up_mid_order_gets_nothing_written(
    app: FastAPI, client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    raw = httpx.Request("POST", "/", json=order_body([("beans", 1)])).content
    sent = await post_then_hang_up(app, "/orders", [(b"content-type", b"application/json")], raw[:20])
    assert sent == []  # nobody is left to answer
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_a_shop_on_another_origin_can_read_the_order_it_placed(
    settings: Settings, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    app = create_app(
        settings.model_copy(update={"cors_origins": [SHOP]}),
        [FintectureSettings(_env_file=None)],  # type: ignore[call-arg]
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
            await put_product(client, admin_headers, "beans", 1250)
            preflight = await client.options(
                "/orders",
                headers={
                    "Origin": SHOP,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == SHOP
            placed = await client.post("/orders", json=order_body([("beans", 1)]), headers={"Origin": SHOP})
            assert placed.status_code == 201, placed.text
            assert placed.headers["access-control-allow-origin"] == SHOP
            refused = await client.post("/orders", json=order_body([("nope", 1)]), headers={"Origin": SHOP})
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == "invalid_items"
            assert refused.headers["access-control-allow-origin"] == SHOP
            stranger = await client.post(
                "/orders", json=order_body([("beans", 1)]), headers={"Origin": "https://elsewhere.example"}
            )
            assert "access-control-allow-origin" not in stranger.headers
    async with sessionmaker() as db:
        orders = (await db.scalars(select(Order))).all()
    # CORS guards browsers, not the API: a client that skips the preflight is still answered (its
    # order placed), only without the header that would let a page on that origin read it.
    assert len(orders) == 2
