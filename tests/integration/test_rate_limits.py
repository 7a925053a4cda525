"""Per-client rate limits on the anonymous endpoints (app/ratelimit.py): a 429 in the error shape
with Retry-After, nothing written for a refused request, the operator never limited, and counters
shared through Redis between processes."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.main import create_app
from app.models import Order
from app.providers.fintecture.settings import FintectureSettings
from tests.conftest import ADMIN_KEY
from tests.integration.orders_helpers import order_body, put_product

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


def _client_address() -> tuple[str, int]:
    """A client address of its own per test: counters in a shared Redis never mix between runs."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}", 50000


@pytest.fixture
def limited_client(settings: Settings) -> ClientFactory:
    @asynccontextmanager
    async def build(
        address: tuple[str, int] | None = None, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        values: dict[str, Any] = {
            "rate_limit_enabled": True,
            "rate_limit_order_create": "2/minute",
            "rate_limit_order_access": "3/minute",
            "rate_limit_callback": "2/minute",
            **overrides,
        }
        app = create_app(settings.model_copy(update=values), [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=address or _client_address())
            async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
                yield client

    return build


async def _orders(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(Order)) or 0)


def assert_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "too_many_requests"
    assert "retry in" in error["message"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


async def test_order_creation_past_the_limit_is_429_and_writes_nothing(
    limited_client: ClientFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with limited_client() as client:
        await put_product(client, ADMIN, "beans", 1250)
        for _ in range(2):
            assert (await client.post("/orders", json=order_body([("beans", 1)]))).status_code == 201
        assert_limited(await client.post("/orders", json=order_body([("beans", 1)])))
        assert await _orders(sessionmaker) == 2


async def test_a_refused_order_counts_once_and_one_that_is_not_json_not_at_all(
    limited_client: ClientFactory, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with limited_client() as client:
        await put_product(client, ADMIN, "beans", 1250)
        json_header = {"Content-Type": "application/json"}
        for _ in range(3):  # refused before the limit is looked at, as FastAPI reads a body
            not_json = await client.post("/orders", content=b'{"items": [', headers=json_header)
            assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "malformed_json"
        invalid = await client.post("/orders", json=order_body([("beans", 0)]))
        assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "validation_error"
        assert (await client.post("/orders", json=order_body([("beans", 1)]))).status_code == 201
        assert_limited(await client.post("/orders", json=order_body([("beans", 1)])))
        assert_limited(await client.post("/orders", json=order_body([("beans", 0)])))
        assert await _orders(sessionmaker) == 1


async def test_each_client_has_its_own_counter(limited_client: ClientFactory) -> None:
    async with limited_client() as first:
        await put_product(first, ADMIN, "beans", 1250)
        for _ in range(2):
            await first.post("/orders", json=order_body([("beans", 1)]))
        assert_limited(await first.post("/orders", json=order_body([("beans", 1)])))
    async with limited_client() as second:
        assert (await second.post("/orders", json=order_body([("beans", 1)]))).status_code == 201


async def test_guessing_order_tokens_is_limited_and_the_operator_is_not(
    limited_client: ClientFactory,
) -> None:
    async with limited_client() as client:
        await put_product(client, ADMIN, "beans", 1250)
        order = (await client.post("/orders", json=order_body([("beans", 1)]))).json()
        for _ in range(3):
            guess = {"Authorization": f"Bearer ot_{secrets.token_urlsafe(32)}"}
            assert (await client.get(f"/orders/{order['id']}", headers=guess)).status_code == 404
        token = {"Authorization": f"Bearer {order['access_token']}"}
        assert_limited(await client.get(f"/orders/{order['id']}", headers=token))
        assert_limited(await client.post(f"/orders/{order['id']}/payment-session", headers=token, json={}))
        for _ in range(5):
            assert (await client.get(f"/orders/{order['id']}", headers=ADMIN)).status_code == 200


async def test_the_payers_return_is_limited(limited_client: ClientFactory) -> None:
    async with limited_client() as client:
        for _ in range(2):
            assert (
                await client.get("/callback", params={"state": "s", "session_id": "x"})
            ).status_code == 400
        assert_limited(await client.get("/callback", params={"state": "s", "session_id": "x"}))


async def test_limits_are_off_unless_enabled(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await put_product(client, admin_headers, "beans", 1250)
    for _ in range(40):  # past every default limit per minute
        assert (await client.get("/callback", params={"state": "s", "session_id": "x"})).status_code == 400


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_url() -> str:
    if not _redis_reachable():
        if os.environ.get("CI"):
            pytest.fail("Redis on 127.0.0.1:6379 is not reachable")
        pytest.skip("Redis on 127.0.0.1:6379 is not reachable")
    return REDIS_URL


async def test_processes_sharing_redis_share_the_limit(
    limited_client: ClientFactory, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    address = _client_address()
    async with (
        limited_client(address, rate_limit_storage_url=redis_url) as first_process,
        limited_client(address, rate_limit_storage_url=redis_url) as second_process,
    ):
        await put_product(first_process, ADMIN, "beans", 1250)
        assert (await first_process.post("/orders", json=order_body([("beans", 1)]))).status_code == 201
        assert (await second_process.post("/orders", json=order_body([("beans", 1)]))).status_code == 201
        assert_limited(await first_process.post("/orders", json=order_body([("beans", 1)])))
        assert_limited(await second_process.post("/orders", json=order_body([("beans", 1)])))
    assert await _orders(sessionmaker) == 2


async def test_with_memory_counters_each_process_counts_alone(limited_client: ClientFactory) -> None:
    address = _client_address()
    async with limited_client(address) as first_process, limited_client(address) as second_process:
        await put_product(first_process, ADMIN, "beans", 1250)
        for client in (first_process, first_process, second_process, second_process):
            assert (await client.post("/orders", json=order_body([("beans", 1)]))).status_code == 201
        assert_limited(await first_process.post("/orders", json=order_body([("beans", 1)])))


async def test_counters_out_of_reach_let_requests_through(limited_client: ClientFactory) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    async with limited_client(rate_limit_storage_url=f"redis://127.0.0.1:{closed_port}/0") as client:
        await put_product(client, ADMIN, "beans", 1250)
        for _ in range(4):
            assert (await client.post("/orders", json=order_body([("beans", 1)]))).status_code == 201


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit_order_create", "lots"),
        ("rate_limit_callback", "10 per fortnight"),
        ("rate_limit_storage_url", "memcached://127.0.0.1:11211"),
    ],
)
def test_settings_refuse_limits_they_cannot_read(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})  # type: ignore[call-arg]
