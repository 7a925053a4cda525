"""GET /orders/{id}: the order's own token or the operator key; every other case is the same 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import NotFound
from app.models import OrderTransition, PaymentSession
from app.orders.service import get_order_for_bearer
from app.providers.base import PaymentStatus
from tests.integration.orders_helpers import create_order, put_product


@pytest.fixture
async def orders(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    await put_product(client, admin_headers, "beans", 1250)
    first = await create_order(client, [("beans", 2)])
    second = await create_order(client, [("beans", 1)])
    return first, second


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_owner_token_reads_the_order(
    client: httpx.AsyncClient, orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, _ = orders
    response = await client.get(f"/orders/{first['id']}", headers=_bearer(first["access_token"]))
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["reference"], body["status"]) == (first["id"], first["reference"], "pending")
    assert (body["total_amount"], body["amount"]) == (2500, "25.00")
    assert body["lines"] == first["lines"]
    assert "access_token" not in body
    assert body["transitions"] is None  # the history is for operators
    assert body["payment"] is None


async def test_scheme_is_case_insensitive(
    client: httpx.AsyncClient, orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, _ = orders
    response = await client.get(
        f"/orders/{first['id']}", headers={"Authorization": f"bearer {first['access_token']}"}
    )
    assert response.status_code == 200


async def test_operator_key_reads_any_order_with_its_history(
    client: httpx.AsyncClient, admin_headers: dict[str, str], orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    _, second = orders
    response = await client.get(f"/orders/{second['id']}", headers=admin_headers)
    assert response.status_code == 200
    [transition] = response.json()["transitions"]
    assert (transition["from_status"], transition["to_status"], transition["source"]) == (
        None,
        "pending",
        "api",
    )


def _denied_requests(orders: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    first, second = orders
    own = first["access_token"]
    return {
        "no token": (first["id"], {}),
        "empty bearer": (first["id"], {"Authorization": "Bearer "}),
        "wrong token": (first["id"], _bearer("ot_" + "A" * 43)),
        "token one char off": (first["id"], _bearer(own[:-1] + ("A" if own[-1] != "A" else "B"))),
        "token hash instead of token": (first["id"], _bearer(own.encode().hex())),
        "another order's token": (first["id"], _bearer(second["access_token"])),
        "token in another scheme": (first["id"], {"Authorization": f"Basic {own}"}),
        "wrong operator key": (first["id"], _bearer("test-admin-key-0123456789abcdeX")),
        "unknown id, valid token": (str(uuid.uuid4()), _bearer(own)),
        "malformed id": ("not-a-uuid", _bearer(own)),
        "malformed id, operator key": ("12345", _bearer("test-admin-key-0123456789abcdef")),
        "non-ascii token": (first["id"], {"Authorization": "Bearer \u00e9t\u00e9".encode()}),
    }


async def test_every_denial_is_the_same_404(
    client: httpx.AsyncClient, orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    bodies = {}
    for case, (order_id, headers) in _denied_requests(orders).items():
        response = await client.get(f"/orders/{order_id}", headers=headers)
        assert response.status_code == 404, case
        assert "www-authenticate" not in response.headers, case
        bodies[case] = response.json()
    assert {str(body) for body in bodies.values()} == {
        str({"error": {"code": "not_found", "message": "order not found"}})
    }


async def test_token_in_query_string_is_not_accepted(
    client: httpx.AsyncClient, orders: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    first, _ = orders
    response = await client.get(f"/orders/{first['id']}", params={"access_token": first["access_token"]})
    assert response.status_code == 404


async def test_get_order_for_bearer(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    orders: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    first, second = orders
    async with sessionmaker() as session:
        order = await get_order_for_bearer(
            session, first["id"], first["access_token"], settings, with_lines=True
        )
        assert order.reference == first["reference"]
        assert [line.sku for line in order.lines] == [line["sku"] for line in first["lines"]]
        admin = settings.admin_api_key.get_secret_value()
        assert (await get_order_for_bearer(session, second["id"], admin, settings)).reference == second[
            "reference"
        ]
        for order_id, bearer in [(first["id"], None), (first["id"], second["access_token"]), ("x", admin)]:
            with pytest.raises(NotFound):
                await get_order_for_bearer(session, order_id, bearer, settings)


async def test_an_unset_operator_key_opens_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    orders: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    first, _ = orders
    no_key = settings.model_copy(update={"admin_api_key": settings.admin_api_key.__class__("")})
    async with sessionmaker() as session:
        with pytest.raises(NotFound):
            await get_order_for_bearer(session, first["id"], "", no_key)


async def test_latest_payment_session_is_summarised(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    orders: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    first, second = orders
    now = datetime.now(UTC)
    older = _session(first["id"], "sess-old", now - timedelta(minutes=10), status=PaymentStatus.EXPIRED)
    newer = _session(first["id"], "sess-new", now, status=PaymentStatus.OPEN)
    other_order = _session(
        second["id"], "sess-other", now + timedelta(minutes=1), status=PaymentStatus.SUCCEEDED
    )
    async with sessionmaker() as session, session.begin():
        session.add_all([older, newer, other_order])
        await session.flush()
        session.add(
            OrderTransition(
                order_id=uuid.UUID(first["id"]),
                payment_session_id=newer.id,
                from_status="pending",
                to_status="awaiting_payment",
                source="api",
            )
        )

    response = await client.get(f"/orders/{first['id']}", headers=_bearer(first["access_token"]))
    payment = response.json()["payment"]
    assert payment == {
        "session_id": str(newer.id),
        "provider": "fintecture",
        "status": "awaiting_payment",
        "payment_status": "open",
        "provider_status": "payment_created",
        "transfer_state": None,
        "connect_url": "https://connect.example.com/sess-new",
        "expires_at": payment["expires_at"],
    }
    assert datetime.fromisoformat(payment["expires_at"]) == newer.expires_at

    history = (await client.get(f"/orders/{first['id']}", headers=admin_headers)).json()["transitions"]
    assert [(t["to_status"], t["payment_session_id"]) for t in history] == [
        ("pending", None),
        ("awaiting_payment", str(newer.id)),
    ]


def _session(
    order_id: str, provider_session_id: str, created_at: datetime, *, status: PaymentStatus
) -> PaymentSession:
    return PaymentSession(
        id=uuid.uuid4(),
        order_id=uuid.UUID(order_id),
        provider="fintecture",
        provider_session_id=provider_session_id,
        state_token=f"state-{provider_session_id}",
        connect_url=f"https://connect.example.com/{provider_session_id}",
        amount=2500,
        currency="EUR",
        communication="ORD-TEST",
        status=status,
        provider_status="payment_created",
        expires_at=created_at + timedelta(minutes=30),
        created_at=created_at,
        updated_at=created_at,
    )
