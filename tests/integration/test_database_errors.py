"""Failures answer in the one error shape, quickly: a database that refuses connections or never
answers is a 503 `database_unavailable`, a pool with every connection in use a 503 `database_busy`
(both with Retry-After), and any other exception a JSON 500 whose request id is in its log line.
Statement errors never carry the values bound to them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from app import errors
from app.config import Settings
from app.db import create_engine, create_sessionmaker, is_database_unavailable
from app.main import create_app
from app.payments import workers
from app.payments.workers import PaymentWorkers
from app.providers.fintecture.settings import FintectureSettings
from tests.conftest import ADMIN_KEY
from tests.support.logs import capture_module_logs

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@asynccontextmanager
async def _service(**overrides: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    values: dict[str, Any] = {"admin_api_key": ADMIN_KEY, "workers_enabled": False, **overrides}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    app = create_app(settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
            yield app, client


@pytest.fixture
async def silent_database() -> AsyncIterator[int]:
    """A server that accepts connections and never says a word: a database host that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def _requests() -> list[tuple[str, str, dict[str, Any]]]:
    order_id = str(uuid.uuid4())
    return [
        ("GET", "/products", {}),
        (
            "POST",
            "/orders",
            {
                "json": {
                    "currency": "EUR",
                    "items": [{"sku": "SKU-1", "quantity": 1}],
                    "customer": {"name": "Camille Martin", "email": "camille@example.com"},
                }
            },
        ),
        ("GET", f"/orders/{order_id}", {"headers": {"Authorization": "Bearer some-order-token-value"}}),
        ("GET", "/orders", {"headers": ADMIN}),
        (
            "PUT",
            "/products/SKU-1",
            {"headers": ADMIN, "json": {"name": "Lamp", "unit_amount": 100, "currency": "EUR"}},
        ),
    ]


def _assert_unavailable(response: httpx.Response, elapsed: float, limit: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert elapsed < limit, elapsed


async def test_a_database_refusing_connections_gives_json_503s_at_once(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/checkout"
    async with _service(database_url=url) as (_, client):
        with capture_module_logs(monkeypatch, errors) as logs:
            for method, path, kwargs in _requests():
                started = time.monotonic()
                response = await client.request(method, path, **kwargs)
                _assert_unavailable(response, time.monotonic() - started, limit=1.0)
    # One line for the whole outage, not one per request.
    warnings = [entry for entry in logs if entry["event"] == "database_unavailable"]
    assert len(warnings) == 1, logs
    assert "ConnectionRefusedError" in warnings[0]["error"]
    assert not [entry for entry in logs if entry["event"] == "unhandled_error"]


async def test_a_database_that_never_answers_gives_json_503s_after_the_connect_timeout(
    silent_database: int,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_database}/checkout"
    async with _service(database_url=url, database_connect_timeout_seconds=0.5) as (_, client):
        started = time.monotonic()
        responses = await asyncio.gather(*(client.request(m, p, **kw) for m, p, kw in _requests()))
        elapsed = time.monotonic() - started
    for response in responses:
        _assert_unavailable(response, elapsed, limit=3.0)
    assert elapsed >= 0.5  # it did wait for the connection, as long as the timeout says


async def test_an_exhausted_pool_gives_a_json_503_after_the_pool_timeout(
    database_url: str, clean_database: str
) -> None:
    async with _service(
        database_url=database_url, database_pool_size=1, database_pool_timeout_seconds=0.5
    ) as (app, client):
        assert (await client.get("/products")).status_code == 200
        # A pool of one connection, no overflow: hold it.
        async with app.state.engine.connect() as held:
            await held.execute(text("SELECT 1"))
            started = time.monotonic()
            busy = await client.get("/products")
            elapsed = time.monotonic() - started
        assert busy.status_code == 503, busy.text
        assert busy.headers["content-type"] == "application/json"
        assert busy.json()["error"]["code"] == "database_busy"
        assert busy.headers["retry-after"] == "1"
        assert 0.5 <= elapsed < 2.0, elapsed
        # Connections back in the pool: served again.
        assert (await client.get("/products")).status_code == 200


async def test_an_unhandled_exception_is_a_json_500_with_a_request_id_in_its_log_line(
    database_url: str, clean_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _service(database_url=database_url) as (app, client):

        async def broken() -> None:
            raise RuntimeError("the shelf collapsed")

        async def bad_statement() -> None:
            async with app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1 / 0"))

        app.add_api_route("/broken", broken)
        app.add_api_route("/bad-statement", bad_statement)
        with capture_module_logs(monkeypatch, errors) as logs:
            crashed = await client.get("/broken?secret=value")
            refused = await client.get("/bad-statement")

    for response in (crashed, refused):
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        error = response.json()["error"]
        assert error["code"] == "internal_error"
        assert "shelf" not in error["message"] and "division" not in error["message"]
    # A statement the database refused is a bug, not an outage: 500, not 503.
    logged = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert [(entry["request_id"], entry["path"]) for entry in logged] == [
        (crashed.json()["error"]["request_id"], "/broken"),
        (refused.json()["error"]["request_id"], "/bad-statement"),
    ]
    assert isinstance(logged[0]["exc_info"], RuntimeError)
    assert "secret" not in str(logged)


@pytest.mark.parametrize(
    "name",
    [
        "Camille Martin",  # the statement fails for its own reason
        "Camille\x00Martin",  # PostgreSQL refuses NUL in text
    ],
)
async def test_statement_errors_never_carry_the_values_bound_to_them(database_url: str, name: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa_exc.DBAPIError) as raised:
                await conn.execute(
                    text("SELECT CAST(:name AS text), CAST(:email AS text), 1 / 0"),
                    {"name": name, "email": "camille@example.com"},
                )
    finally:
        await engine.dispose()
    message = str(raised.value)
    assert "Camille" not in message and "camille@example.com" not in message
    assert "parameters hidden" in message
    assert not is_database_unavailable(raised.value)


async def test_the_workers_outlive_an_unreachable_database_with_one_line_and_backing_off(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"postgresql://postgres@127.0.0.1:{closed_port}/checkout",
        inbox_poll_seconds=0.05,
        sweeper_interval_seconds=0.05,
    )
    engine = create_engine(settings.database_url, pool_size=1)
    payment_workers = PaymentWorkers(settings, create_sessionmaker(engine), {})
    passes = 0
    drain = payment_workers.drain_inbox

    async def counted_drain() -> Any:
        nonlocal passes
        passes += 1
        return await drain()

    monkeypatch.setattr(payment_workers, "drain_inbox", counted_drain)
    with capture_module_logs(monkeypatch, workers) as logs:
        payment_workers.start()
        try:
            await asyncio.sleep(1.6)
            assert not any(task.done() for task in payment_workers._tasks)
        finally:
            await payment_workers.stop()
            await engine.dispose()
    assert sorted(entry["event"] for entry in logs) == [
        "inbox_worker_database_unavailable",
        "sweeper_database_unavailable",
    ]
    # Polling every 0.05 s would make some 30 passes; backing off (0.05, 0.1, 0.2, ...) makes 5 or 6.
    assert 3 <= passes <= 8, passes
