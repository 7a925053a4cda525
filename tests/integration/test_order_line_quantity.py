"""MAX_LINE_QUANTITY: a line holding more units than the setting allows is a 422 naming the line, and
nothing is written; the demo shop's quantity field shows the same limit."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.providers.fintecture.settings import FintectureSettings
from tests.integration.orders_helpers import NO_ROWS, order_body, put_product, row_counts


@pytest.fixture
async def catalog(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await put_product(client, admin_headers, "beans", 1250, name="Beans")
    await put_product(client, admin_headers, "kettle", 2475, name="Kettle")


def test_the_default_is_ten_units_per_line() -> None:
    assert Settings(_env_file=None).max_line_quantity == 10  # type: ignore[call-arg]


async def test_fifty_units_are_refused_naming_the_line(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/orders", json=order_body([("kettle", 1), ("beans", 50)]))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_items"
    assert error["details"] == [
        {
            "field": "body.items.1.quantity",
            "type": "quantity_too_large",
            "message": "line 2 (beans): 50 units, at most 10 per line",
        }
    ]
    assert error["message"] == "order items are invalid: line 2 (beans): 50 units, at most 10 per line"
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_every_problem_is_reported_at_once(
    client: httpx.AsyncClient, catalog: None, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/orders", json=order_body([("beans", 11), ("nope", 1), ("kettle", 999)]))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [(d["field"], d["type"]) for d in error["details"]] == [
        ("body.items.0.quantity", "quantity_too_large"),
        ("body.items.1.sku", "unknown_sku"),
        ("body.items.2.quantity", "quantity_too_large"),
    ]
    assert error["message"].endswith("(and 2 more)")
    assert await row_counts(sessionmaker) == NO_ROWS


async def test_the_limit_itself_is_accepted(client: httpx.AsyncClient, catalog: None) -> None:
    response = await client.post("/orders", json=order_body([("beans", 10), ("kettle", 10)]))
    assert response.status_code == 201, response.text
    assert [line["quantity"] for line in response.json()["lines"]] == [10, 10]
    assert response.json()["total_amount"] == 10 * 1250 + 10 * 2475


@pytest.fixture
async def client_of_25(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"max_line_quantity": 25, "demo_storefront": True})
    app = create_app(configured, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
            yield client


async def test_the_setting_moves_the_limit_for_the_api_and_the_shop(
    client_of_25: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client_of_25, admin_headers, "beans", 1250)
    assert (await client_of_25.post("/orders", json=order_body([("beans", 25)]))).status_code == 201
    refused = await client_of_25.post("/orders", json=order_body([("beans", 26)]))
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["message"] == "line 1 (beans): 26 units, at most 25 per line"
    # The shop's quantity field reads the same setting, rendered into its page.
    page = await client_of_25.get("/")
    assert re.search(r'data-max-line-quantity="25"', page.text), page.text[:400]


@pytest.mark.parametrize("value", ["0", "1001", "ten"])
def test_an_unusable_setting_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MAX_LINE_QUANTITY", value)
    with pytest.raises(ValidationError, match="max_line_quantity"):
        Settings(_env_file=None)  # type: ignore[call-arg]
