"""Idempotency-Key: one order per key, the same answer on retries, 409 while in flight, 422 on reuse."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.errors import ApiError
from app.idempotency import fingerprint_of, idempotent, lock_key
from app.models import IdempotencyKey
from app.orders.routes import CREATE_SCOPE
from app.orders.schemas import OrderCreate
from tests.integration.orders_helpers import NO_ROWS, order_body, put_product, row_counts


@pytest.fixture
async def catalog(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await put_product(client, admin_headers, "beans", 1250)
    await put_product(client, admin_headers, "kettle", 2475)


def _key(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_retry_with_same_key_replays_the_first_response(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = order_body([("beans", 2), ("kettle", 1)])
    first = await client.post("/orders", json=body, headers=_key("checkout-42"))
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers

    # Even if prices change in between, the retry gets the original order (and its access token).
    await put_product(client, admin_headers, "beans", 9999)
    # Same request, keys in another order and other whitespace: same fingerprint.
    reordered = json.dumps(
        {"currency": "EUR", "customer": body["customer"], "items": body["items"]}, indent=2
    )
    second = await client.post(
        "/orders", content=reordered, headers={**_key("checkout-42"), "Content-Type": "application/json"}
    )
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert second.json()["total_amount"] == 2 * 1250 + 2475

    # The replayed token works.
    token = {"Authorization": f"Bearer {second.json()['access_token']}"}
    assert (await client.get(f"/orders/{first.json()['id']}", headers=token)).status_code == 200
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["order_lines"], counts["idempotency_keys"]) == (1, 2, 1)


async def test_same_key_with_another_body_is_422(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (
        await client.post("/orders", json=order_body([("beans", 1)]), headers=_key("k1"))
    ).status_code == 201
    response = await client.post("/orders", json=order_body([("beans", 2)]), headers=_key("k1"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert (await row_counts(sessionmaker))["orders"] == 1


async def test_distinct_keys_and_no_key_create_distinct_orders(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = order_body([("beans", 1)])
    ids = {
        (await client.post("/orders", json=body, headers=_key("a"))).json()["id"],
        (await client.post("/orders", json=body, headers=_key("b"))).json()["id"],
        (await client.post("/orders", json=body)).json()["id"],
        (await client.post("/orders", json=body)).json()["id"],
    }
    assert len(ids) == 4
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["idempotency_keys"]) == (4, 2)


async def test_concurrent_requests_with_one_key_make_one_order(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = order_body([("beans", 3)])
    for round_ in range(3):
        responses = await asyncio.gather(
            *(client.post("/orders", json=body, headers=_key(f"burst-{round_}")) for _ in range(10))
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, statuses
        originals = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
        assert len(originals) == 1, statuses
        order_id = originals[0].json()["id"]
        for response in responses:
            if response.status_code == 201:
                assert response.json()["id"] == order_id
            else:
                assert response.json()["error"]["code"] == "idempotency_key_in_progress"
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["idempotency_keys"]) == (3, 3)


async def test_request_in_flight_gets_409_then_succeeds(
    client: httpx.AsyncClient,
    catalog: None,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = order_body([("beans", 1)])
    # Another transaction holding the key's lock is exactly what an in-flight request looks like.
    async with engine.begin() as conn:
        await conn.execute(select(func.pg_advisory_xact_lock(lock_key(CREATE_SCOPE, "slow-key"))))
        response = await client.post("/orders", json=body, headers=_key("slow-key"))
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_in_progress"
        assert "retry" in error["message"]
        assert await row_counts(sessionmaker) == NO_ROWS
    response = await client.post("/orders", json=body, headers=_key("slow-key"))
    assert response.status_code == 201


async def test_refused_request_stores_nothing_and_the_key_stays_usable(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    body = order_body([("espresso", 1)])
    refused = await client.post("/orders", json=body, headers=_key("retry-me"))
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_items"
    assert await row_counts(sessionmaker) == NO_ROWS

    await put_product(client, admin_headers, "espresso", 2000)
    accepted = await client.post("/orders", json=body, headers=_key("retry-me"))
    assert accepted.status_code == 201
    assert "idempotent-replayed" not in accepted.headers


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "tab\there", "del\x7f", "caf\u00e9".encode()],
    ids=["empty", "too-long", "control", "del", "non-ascii"],
)
async def test_invalid_keys_are_400_without_writing(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession], key: str | bytes
) -> None:
    response = await client.post("/orders", json=order_body([("beans", 1)]), headers={"Idempotency-Key": key})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key"
    assert error["details"][0]["field"] == "header.Idempotency-Key"
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_longest_and_oddest_valid_keys(client: httpx.AsyncClient, catalog: None) -> None:
    for key in ["k" * 255, "a b:c/d?e=f~!", "7c1e6a57-60e0-4b5a-a0a4-5a3bd1f0b8a2"]:
        response = await client.post("/orders", json=order_body([("beans", 1)]), headers=_key(key))
        assert response.status_code == 201, key


# --- the module itself, as the payment-session route uses it -------------------------------------


async def test_idempotent_runs_once_per_scope_and_key(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    calls: list[str] = []

    def handler_for(tag: str) -> Any:
        async def handler() -> tuple[int, dict[str, Any]]:
            calls.append(tag)
            return 201, {"tag": tag}

        return handler

    fp = fingerprint_of({"order": "1"}, "path-id")
    for tag, scope in [("first", "payments"), ("again", "payments"), ("other-scope", "refunds")]:
        async with sessionmaker() as session, session.begin():
            result = await idempotent(session, scope=scope, key="k", fingerprint=fp, handler=handler_for(tag))
            if tag == "again":
                assert result == (201, {"tag": "first"}, True)
            else:
                assert result == (201, {"tag": tag}, False)
    assert calls == ["first", "other-scope"]

    async with sessionmaker() as session:
        with pytest.raises(ApiError) as caught:
            await idempotent(
                session,
                scope="payments",
                key="k",
                fingerprint=fingerprint_of("other"),
                handler=handler_for("x"),
            )
    assert (caught.value.status_code, caught.value.code) == (422, "idempotency_key_reused")


async def test_only_successful_responses_are_stored(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async def declined() -> tuple[int, dict[str, Any]]:
        return 402, {"error": "declined"}

    async def failing() -> tuple[int, dict[str, Any]]:
        raise ApiError(502, "provider_error", "provider down")

    async with sessionmaker() as session, session.begin():
        assert await idempotent(session, scope="s", key="k1", fingerprint="f", handler=declined) == (
            402,
            {"error": "declined"},
            False,
        )
    with pytest.raises(ApiError):
        async with sessionmaker() as session, session.begin():
            await idempotent(session, scope="s", key="k2", fingerprint="f", handler=failing)
    async with sessionmaker() as session:
        assert (await session.scalars(select(IdempotencyKey))).all() == []


async def test_no_key_just_runs_the_handler(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    runs = 0

    async def handler() -> tuple[int, dict[str, Any]]:
        nonlocal runs
        runs += 1
        return 200, {"run": runs}

    async with sessionmaker() as session, session.begin():
        assert await idempotent(session, scope="s", key=None, fingerprint="f", handler=handler) == (
            200,
            {"run": 1},
            False,
        )
        assert await idempotent(session, scope="s", key=None, fingerprint="f", handler=handler) == (
            200,
            {"run": 2},
            False,
        )
        assert (await session.scalars(select(IdempotencyKey))).all() == []


def test_fingerprint_is_canonical() -> None:
    body = {"items": [{"sku": "beans", "quantity": 1}], "customer": {"name": "A", "email": "a@example.com"}}
    model = OrderCreate.model_validate({**body, "currency": "EUR"})
    same_model = OrderCreate.model_validate(
        {"currency": "EUR", "customer": body["customer"], "items": body["items"]}
    )
    assert fingerprint_of(model) == fingerprint_of(same_model)
    assert fingerprint_of(model, "order-1") != fingerprint_of(model, "order-2")
    assert fingerprint_of({"a": 1, "b": 2}) == fingerprint_of({"b": 2, "a": 1})
    assert fingerprint_of({"a": 1}) != fingerprint_of({"a": "1"})
    assert len(fingerprint_of()) == 64
