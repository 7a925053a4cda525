"""The pool is open when the process starts (DATABASE_POOL_PREFILL, on by default): the first burst
of requests after a start does not wait while connections are opened one by one. Opening it is best
effort: a database out of reach delays nothing beyond the connect timeout and leaves the pool to
open on demand, as before."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import main
from app.config import Settings
from app.main import create_app
from app.providers.fintecture.settings import FintectureSettings
from tests.conftest import ADMIN_KEY
from tests.support.logs import capture_module_logs


@asynccontextmanager
async def _service(**overrides: Any) -> AsyncIterator[FastAPI]:
    values: dict[str, Any] = {"admin_api_key": ADMIN_KEY, "workers_enabled": False, **overrides}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    app = create_app(settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with app.router.lifespan_context(app):
        yield app


async def _server_connections(engine: AsyncEngine) -> int:
    """Connections the server has open on this test's database, other than `engine`'s own."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    return int(count or 0)


async def test_the_whole_pool_is_open_when_the_service_starts(
    database_url: str, engine: AsyncEngine, clean_database: str
) -> None:
    before = await _server_connections(engine)
    async with _service(database_url=database_url, database_pool_size=7) as app:
        pool = app.state.engine.sync_engine.pool
        assert (pool.checkedin(), pool.checkedout()) == (7, 0)
        assert await _server_connections(engine) == before + 7
        # A burst no larger than the pool opens nothing more.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
            for _ in range(3):
                assert (await client.get("/products")).status_code == 200
        assert await _server_connections(engine) == before + 7
    assert await _server_connections(engine) == before  # closed with the service


async def test_without_prefill_the_pool_opens_on_demand(
    database_url: str, engine: AsyncEngine, clean_database: str
) -> None:
    before = await _server_connections(engine)
    async with _service(database_url=database_url, database_pool_size=7, database_pool_prefill=False) as app:
        assert app.state.engine.sync_engine.pool.checkedin() == 0
        assert await _server_connections(engine) == before


async def test_a_database_out_of_reach_does_not_stop_the_start(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (Requests then get 503s, as test_database_errors.py shows; the pool opens on demand.)
    url = f"postgresql://postgres@127.0.0.1:{closed_port}/checkout"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, database_pool_size=5, workers_enabled=False
    )
    app = create_app(settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    started = time.monotonic()
    with capture_module_logs(monkeypatch, main) as logs:
        async with app.router.lifespan_context(app):
            assert time.monotonic() - started < 2.0
            assert app.state.engine.sync_engine.pool.checkedin() == 0
    [line] = [entry for entry in logs if entry["event"] == "database_pool_not_filled"]
    assert (line["opened"], line["pool_size"]) == (0, 5)
