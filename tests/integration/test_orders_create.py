"""POST /orders: priced from the catalog, every bad input refused with a clear error and no rows."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import Order, OrderLine, OrderTransition, Product
from app.orders import repository, service
from app.orders.schemas import MAX_QUANTITY
from app.providers.fintecture.settings import FintectureSettings
from tests.integration.orders_helpers import NO_ROWS, order_body, put_product, row_counts


@pytest.fixture
async def catalog(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await put_product(client, admin_headers, "beans", 1250, name="Beans")
    await put_product(client, admin_headers, "kettle", 2475, name="Kettle")
    await put_product(client, admin_headers, "retired", 900, active=False)
    await put_product(client, admin_headers, "tea-gbp", 800, currency="GBP")


async def test_total_is_computed_from_the_catalog(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = order_body(
        [("beans", 3), ("kettle", 2)],
        customer={
            "name": " Camille Martin ",
            "email": "camille@example.com",
            "phone": "+33 6 12 34 56 78",
            "company": "Atelier Martin",
            "address": {
                "street": "Rue de Rivoli",
                "number": "12",
                "zip": "75004",
                "city": "Paris",
                "country": "fr",
            },
        },
    )
    response = await client.post("/orders", json=body)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["currency"] == "EUR"
    assert order["total_amount"] == 3 * 1250 + 2 * 2475 == 8700
    assert order["amount"] == "87.00"
    assert order["lines"] == [
        {
            "sku": "beans",
            "name": "Beans",
            "quantity": 3,
            "unit_amount": 1250,
            "unit_price": "12.50",
            "line_amount": 3750,
            "line_total": "37.50",
        },
        {
            "sku": "kettle",
            "name": "Kettle",
            "quantity": 2,
            "unit_amount": 2475,
            "unit_price": "24.75",
            "line_amount": 4950,
            "line_total": "49.50",
        },
    ]
    assert order["customer"] == {
        "name": "Camille Martin",
        "email": "camille@example.com",
        "phone": "+33 6 12 34 56 78",
        "company": "Atelier Martin",
        "address": {
            "street": "Rue de Rivoli",
            "number": "12",
            "complement": None,
            "zip": "75004",
            "city": "Paris",
            "country": "FR",
        },
    }
    assert order["payment"] is None
    assert order["transitions"] is None
    assert re.fullmatch(r"ORD-[2-9A-HJKMNP-TV-Z]{8}", order["reference"])
    assert order["created_at"] and order["updated_at"]
    assert order["access_token"].startswith("ot_") and len(order["access_token"]) >= 40

    async with sessionmaker() as session:
        stored = await session.get(Order, order["id"])
        assert stored is not None
        assert (stored.total_amount, stored.status, stored.reference) == (8700, "pending", order["reference"])
        # Only the token's hash is kept.
        assert stored.access_token_hash == hashlib.sha256(order["access_token"].encode()).hexdigest()
        lines = (await session.scalars(select(OrderLine).order_by(OrderLine.position))).all()
        assert [(ln.sku, ln.quantity, ln.line_amount) for ln in lines] == [
            ("beans", 3, 3750),
            ("kettle", 2, 4950),
        ]
        [transition] = (await session.scalars(select(OrderTransition))).all()
        assert (transition.from_status, transition.to_status, transition.source) == (None, "pending", "api")


async def test_the_order_is_readable_right_after_creation(client: httpx.AsyncClient, catalog: None) -> None:
    # The request boundary commits before the 201 is sent.
    created = (await client.post("/orders", json=order_body([("beans", 1)]))).json()
    response = await client.get(
        f"/orders/{created['id']}", headers={"Authorization": f"Bearer {created['access_token']}"}
    )
    assert response.status_code == 200
    assert response.json()["total_amount"] == 1250


async def test_later_price_changes_do_not_touch_existing_orders(
    client: httpx.AsyncClient, admin_headers: dict[str, str], catalog: None
) -> None:
    created = (await client.post("/orders", json=order_body([("beans", 2)]))).json()
    await put_product(client, admin_headers, "beans", 9999, name="Beans")
    again = await client.get(f"/orders/{created['id']}", headers=admin_headers)
    assert again.json()["total_amount"] == 2500
    assert again.json()["lines"][0]["unit_amount"] == 1250


async def test_largest_allowed_order(settings: Settings, admin_headers: dict[str, str]) -> None:
    # MAX_LINE_QUANTITY at the schema's ceiling: the largest order any configuration accepts.
    app = create_app(
        settings.model_copy(update={"max_line_quantity": MAX_QUANTITY}),
        [FintectureSettings(_env_file=None)],  # type: ignore[call-arg]
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://checkout.test") as client,
    ):
        for i in range(50):
            await put_product(client, admin_headers, f"sku-{i:02d}", 10_000_000_000)
        items = [(f"sku-{i:02d}", MAX_QUANTITY) for i in range(50)]
        response = await client.post("/orders", json=order_body(items))
    assert response.status_code == 201, response.text
    assert response.json()["total_amount"] == 50 * 1000 * 10_000_000_000


CLIENT_PRICES = [
    pytest.param({"total_amount": 1}, "body.total_amount", id="total_amount"),
    pytest.param({"amount": "0.01"}, "body.amount", id="amount"),
    pytest.param({"total": 1}, "body.total", id="total"),
]


@pytest.mark.parametrize(("extra", "field"), CLIENT_PRICES)
async def test_client_sent_amounts_are_rejected(
    client: httpx.AsyncClient,
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    extra: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/orders", json=order_body([("beans", 1)], **extra))
    _assert_refused(response, 422, "validation_error", field)
    assert await row_counts(sessionmaker) == NO_ROWS


@pytest.mark.parametrize("key", ["unit_amount", "price", "line_amount"])
async def test_client_sent_line_prices_are_rejected(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession], key: str
) -> None:
    body = order_body([("beans", 1)])
    body["items"][0][key] = 1
    response = await client.post("/orders", json=body)
    _assert_refused(response, 422, "validation_error", f"body.items.0.{key}")
    assert await row_counts(sessionmaker) == NO_ROWS


def _assert_refused(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in [d["field"] for d in error["details"]], error
    return error


INVALID_BODIES = [
    pytest.param(order_body([]), "body.items", id="empty-items"),
    pytest.param({**order_body([("beans", 1)]), "items": None}, "body.items", id="items-null"),
    pytest.param(
        {k: v for k, v in order_body([("beans", 1)]).items() if k != "items"}, "body.items", id="no-items"
    ),
    pytest.param(order_body([("beans", 0)]), "body.items.0.quantity", id="zero-quantity"),
    pytest.param(order_body([("beans", -3)]), "body.items.0.quantity", id="negative-quantity"),
    pytest.param(order_body([("beans", 1001)]), "body.items.0.quantity", id="absurd-quantity"),
    pytest.param(order_body([("beans", 10**30)]), "body.items.0.quantity", id="huge-quantity"),
    pytest.param(
        {**order_body([]), "items": [{"sku": "beans", "quantity": 1.5}]},
        "body.items.0.quantity",
        id="float-qty",
    ),
    pytest.param(
        {**order_body([]), "items": [{"sku": "beans", "quantity": "2"}]},
        "body.items.0.quantity",
        id="string-qty",
    ),
    pytest.param({**order_body([]), "items": [{"sku": "beans"}]}, "body.items.0.quantity", id="missing-qty"),
    pytest.param(order_body([("bad sku!", 1)]), "body.items.0.sku", id="malformed-sku"),
    pytest.param(order_body([("beans", 1)] * 51), "body.items", id="too-many-lines"),
    pytest.param(
        {**order_body([("beans", 1)]), "items": {"sku": "beans"}}, "body.items", id="items-not-list"
    ),
    pytest.param(order_body([("beans", 1)], currency="USD"), "body.currency", id="unsupported-currency"),
    pytest.param(order_body([("beans", 1)], currency="eur"), "body.currency", id="lowercase-currency"),
    pytest.param(
        {k: v for k, v in order_body([("beans", 1)]).items() if k != "currency"}, "body.currency", id="no-cur"
    ),
    pytest.param(order_body([("beans", 1)], customer={"name": "A"}), "body.customer.email", id="no-email"),
    pytest.param(
        order_body([("beans", 1)], customer={"name": "A", "email": "not-an-email"}),
        "body.customer.email",
        id="email",
    ),
    pytest.param(
        order_body([("beans", 1)], customer={"name": " ", "email": "a@example.com"}),
        "body.customer.name",
        id="name",
    ),
    pytest.param(
        order_body([("beans", 1)], customer={"name": "A", "email": "a@example.com", "phone": "call me"}),
        "body.customer.phone",
        id="phone",
    ),
    pytest.param(
        order_body(
            [("beans", 1)],
            customer={
                "name": "A",
                "email": "a@example.com",
                "address": {"street": "Main St", "zip": "1000", "city": "Brussels", "country": "Belgium"},
            },
        ),
        "body.customer.address.country",
        id="country",
    ),
    pytest.param(
        order_body(
            [("beans", 1)],
            customer={
                "name": "A",
                "email": "a@example.com",
                "address": {"street": "Main St", "country": "BE"},
            },
        ),
        "body.customer.address.zip",
        id="address-incomplete",
    ),
    pytest.param(order_body([("beans", 1)], customer="Camille"), "body.customer", id="customer-not-object"),
    pytest.param(
        order_body([("beans", 1)], customer={"name": "A", "email": "a@example.com", "iban": "FR76..."}),
        "body.customer.iban",
        id="unknown-customer-field",
    ),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_invalid_requests_are_refused_without_writing(
    client: httpx.AsyncClient,
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/orders", json=body)
    _assert_refused(response, 422, "validation_error", field)
    assert await row_counts(sessionmaker) == NO_ROWS


@pytest.mark.parametrize("idempotency_key", [None, "reverse-order-1"], ids=["autocommit", "keyed"])
async def test_each_line_is_priced_from_its_own_sku_whatever_the_order_of_the_lines(
    client: httpx.AsyncClient,
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    idempotency_key: str | None,
) -> None:
    # The statement that writes the order prices its lines from the catalog: each line keeps its
    # position, SKU, name and price, however the catalog's rows come back.
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    response = await client.post("/orders", json=order_body([("kettle", 1), ("beans", 4)]), headers=headers)
    assert response.status_code == 201, response.text
    order = response.json()
    assert [(ln["sku"], ln["name"], ln["unit_amount"], ln["line_amount"]) for ln in order["lines"]] == [
        ("kettle", "Kettle", 2475, 2475),
        ("beans", "Beans", 1250, 5000),
    ]
    assert order["total_amount"] == 7475
    async with sessionmaker() as session:
        lines = (await session.scalars(select(OrderLine).order_by(OrderLine.position))).all()
        assert [(ln.position, ln.sku, ln.name, ln.unit_amount, ln.quantity) for ln in lines] == [
            (1, "kettle", "Kettle", 2475, 1),
            (2, "beans", "Beans", 1250, 4),
        ]
        stored = await session.get(Order, order["id"])
        assert stored is not None and stored.total_amount == 7475


@pytest.mark.parametrize(
    ("items", "currency", "expected"),
    [
        pytest.param([("nope", 1)], "EUR", [("body.items.0.sku", "unknown_sku")], id="unknown"),
        pytest.param(
            [("beans", 1), ("retired", 1)], "EUR", [("body.items.1.sku", "inactive_sku")], id="inactive"
        ),
        pytest.param(
            [("beans", 1), ("tea-gbp", 1)], "EUR", [("body.items.1.sku", "currency_mismatch")], id="cur-eur"
        ),
        pytest.param([("beans", 1)], "GBP", [("body.items.0.sku", "currency_mismatch")], id="cur-gbp"),
        pytest.param(
            [("beans", 1), ("kettle", 1), ("beans", 2)],
            "EUR",
            [("body.items.2.sku", "duplicate_sku")],
            id="duplicate",
        ),
        pytest.param(
            [("nope", 1), ("beans", 1), ("retired", 2), ("tea-gbp", 1)],
            "EUR",
            [
                ("body.items.0.sku", "unknown_sku"),
                ("body.items.2.sku", "inactive_sku"),
                ("body.items.3.sku", "currency_mismatch"),
            ],
            id="all-reported",
        ),
    ],
)
async def test_catalog_problems_name_each_offending_item(
    client: httpx.AsyncClient,
    catalog: None,
    sessionmaker: async_sessionmaker[AsyncSession],
    items: list[tuple[str, int]],
    currency: str,
    expected: list[tuple[str, str]],
) -> None:
    response = await client.post("/orders", json=order_body(items, currency))
    error = _assert_refused(response, 422, "invalid_items")
    assert [(d["field"], d["type"]) for d in error["details"]] == expected
    assert all(d["message"] for d in error["details"])
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_unknown_sku_message_is_readable(client: httpx.AsyncClient, catalog: None) -> None:
    response = await client.post("/orders", json=order_body([("nope", 1)]))
    assert response.json()["error"]["message"] == "order items are invalid: no product with SKU 'nope'"


async def test_malformed_json_is_400_without_writing(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post(
        "/orders", content=b'{"items": [', headers={"Content-Type": "application/json"}
    )
    _assert_refused(response, 400, "malformed_json")
    assert await row_counts(sessionmaker) == NO_ROWS


@pytest.mark.parametrize(
    "payload", [b"[]", b'"order"', b"null", b""], ids=["list", "string", "null", "empty"]
)
async def test_wrong_body_type_is_422_without_writing(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession], payload: bytes
) -> None:
    response = await client.post("/orders", content=payload, headers={"Content-Type": "application/json"})
    _assert_refused(response, 422, "validation_error")
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_huge_body_is_413_without_writing(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    body = order_body([("beans", 1)], customer={"name": "x" * 100_000, "email": "a@example.com"})
    response = await client.post("/orders", json=body)
    _assert_refused(response, 413, "payload_too_large")
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_huge_streamed_body_without_length_is_413(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"items": [{"sku": "beans", "quantity": 1}], "customer": {"name": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'", "email": "a@example.com"}, "currency": "EUR"}'

    response = await client.post("/orders", content=chunks(), headers={"Content-Type": "application/json"})
    _assert_refused(response, 413, "payload_too_large")
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_a_product_enabled_between_the_pricing_and_the_catalog_read_is_priced_again(
    client: httpx.AsyncClient,
    catalog: None,
    monkeypatch: pytest.MonkeyPatch,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # The statement refuses the inactive product; before the read that would name the problem, an
    # operator enables it. The read finds nothing wrong, so the order is priced again: written
    # once, at the catalog's price.
    real_read = repository.catalog_prices
    reads = 0

    async def read_after_enabling(conn: Any, skus: list[str]) -> Any:
        nonlocal reads
        reads += 1
        async with sessionmaker() as session, session.begin():
            await session.execute(update(Product).where(Product.sku == "retired").values(active=True))
        return await real_read(conn, skus)

    monkeypatch.setattr(repository, "catalog_prices", read_after_enabling)
    response = await client.post("/orders", json=order_body([("beans", 1), ("retired", 2)]))
    assert response.status_code == 201, response.text
    assert reads == 1
    assert [(ln["sku"], ln["unit_amount"]) for ln in response.json()["lines"]] == [
        ("beans", 1250),
        ("retired", 900),
    ]
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["order_lines"], counts["order_transitions"]) == (1, 2, 1)


async def test_reference_collision_is_retried(
    client: httpx.AsyncClient,
    catalog: None,
    monkeypatch: pytest.MonkeyPatch,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = (await client.post("/orders", json=order_body([("beans", 1)]))).json()
    fresh = "ORD-ZZZZZZZZ"
    references = iter([first["reference"], first["reference"], fresh])
    monkeypatch.setattr(service, "new_reference", lambda: next(references))

    response = await client.post("/orders", json=order_body([("kettle", 2)]))
    assert response.status_code == 201, response.text
    second = response.json()
    assert second["reference"] == fresh
    assert [(line["sku"], line["quantity"]) for line in second["lines"]] == [("kettle", 2)]
    # Both orders, each with its own lines, and no stray rows from the failed attempts.
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["order_lines"], counts["order_transitions"]) == (2, 2, 2)
    token = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await client.get(f"/orders/{second['id']}", headers=token)).json()["total_amount"] == 4950


async def test_reference_collision_under_an_idempotency_key_is_retried_inside_its_transaction(
    client: httpx.AsyncClient,
    catalog: None,
    monkeypatch: pytest.MonkeyPatch,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = (await client.post("/orders", json=order_body([("beans", 1)]))).json()
    fresh = "ORD-YYYYYYYY"
    references = iter([first["reference"], fresh])
    monkeypatch.setattr(service, "new_reference", lambda: next(references))
    headers = {"Idempotency-Key": "collision-under-key"}

    response = await client.post("/orders", json=order_body([("kettle", 1)]), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["reference"] == fresh
    # The collision rolled back to its savepoint only: the order and its key were both kept.
    counts = await row_counts(sessionmaker)
    assert (counts["orders"], counts["order_lines"], counts["order_transitions"]) == (2, 2, 2)
    replayed = await client.post("/orders", json=order_body([("kettle", 1)]), headers=headers)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json()["id"] == response.json()["id"]


def test_reference_alphabet_is_unambiguous() -> None:
    assert not set("01ILOU") & set(service.REFERENCE_ALPHABET)
    for _ in range(200):
        reference = service.new_reference()
        assert len(reference) <= 32
        assert re.fullmatch(r"ORD-[A-Z0-9]{8}", reference)
