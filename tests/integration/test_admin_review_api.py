"""POST /orders/{id}/review/resolve: the operator's JSON way out of `needs_review`."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import Order, OrderTransition, OutboundEvent
from app.providers.base import PaymentStatus
from tests.integration.test_writer import apply, make_order, snapshot_for


async def _in_review(sm: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    order_id, [sid] = await make_order(sm)
    over = await snapshot_for(
        sm, sid, PaymentStatus.SUCCEEDED, "payment_created", "completed", amount=Decimal("300.00")
    )
    await apply(sm, sid, over)
    return order_id


async def _written(sm: async_sessionmaker[AsyncSession], order_id: uuid.UUID) -> tuple[str, int, int]:
    async with sm() as db:
        order = await db.get(Order, order_id)
        assert order is not None
        transitions = await db.scalar(
            select(func.count()).select_from(OrderTransition).where(OrderTransition.order_id == order_id)
        )
        events = await db.scalar(
            select(func.count()).select_from(OutboundEvent).where(OutboundEvent.order_id == order_id)
        )
        return order.status, int(transitions or 0), int(events or 0)


async def test_an_operator_resolves_a_review(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await _in_review(sessionmaker)
    response = await client.post(
        f"/orders/{order_id}/review/resolve",
        json={"to": "paid", "note": "  Over-payment of 26.50 EUR returned to the payer  "},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "paid" and body["order_id"] == str(order_id)
    assert body["transition"]["from_status"] == "needs_review"
    assert body["transition"]["source"] == "operator"
    assert body["transition"]["note"] == "Over-payment of 26.50 EUR returned to the payer"
    async with sessionmaker() as db:
        row = await db.scalar(
            select(OrderTransition)
            .where(OrderTransition.order_id == order_id)
            .order_by(OrderTransition.id.desc())
            .limit(1)
        )
    assert row is not None and (row.to_status, row.source, row.note) == (
        "paid",
        "operator",
        "Over-payment of 26.50 EUR returned to the payer",
    )
    # The history the operator reads back carries the note.
    read = await client.get(f"/orders/{order_id}", headers=admin_headers)
    assert read.json()["transitions"][-1]["note"] == "Over-payment of 26.50 EUR returned to the payer"

    # A second resolution finds nothing to resolve.
    again = await client.post(
        f"/orders/{order_id}/review/resolve", json={"to": "failed", "note": "late"}, headers=admin_headers
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "review_not_open"
    assert (await _written(sessionmaker, order_id))[0] == "paid"


async def test_an_order_not_in_review_is_a_409_and_nothing_is_written(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id, _ = await make_order(sessionmaker)
    before = await _written(sessionmaker, order_id)
    response = await client.post(
        f"/orders/{order_id}/review/resolve", json={"to": "paid", "note": "x"}, headers=admin_headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "review_not_open"
    assert await _written(sessionmaker, order_id) == before


@pytest.mark.parametrize(
    "body",
    [
        {"to": "refunded", "note": "x"},
        {"to": "needs_review", "note": "x"},
        {"to": "paid"},
        {"to": "paid", "note": ""},
        {"to": "paid", "note": "   "},
        {"to": "paid", "note": "x" * 1001},
        {"to": "paid", "note": "nul \x00 byte"},
        {"to": "paid", "note": "x", "source": "webhook"},
        {"note": "x"},
        [],
    ],
)
async def test_bad_input_is_a_422_and_nothing_is_written(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    body: Any,
) -> None:
    order_id = await _in_review(sessionmaker)
    before = await _written(sessionmaker, order_id)
    response = await client.post(f"/orders/{order_id}/review/resolve", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert set(response.json()["error"]) >= {"code", "message"}
    assert await _written(sessionmaker, order_id) == before


async def test_the_operator_key_is_required(
    client: httpx.AsyncClient, admin_headers: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    order_id = await _in_review(sessionmaker)
    before = await _written(sessionmaker, order_id)
    body = {"to": "paid", "note": "x"}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        response = await client.post(f"/orders/{order_id}/review/resolve", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert await _written(sessionmaker, order_id) == before
    for unknown in (uuid.uuid4(), "not-an-id"):
        response = await client.post(f"/orders/{unknown}/review/resolve", json=body, headers=admin_headers)
        assert response.status_code == 404
