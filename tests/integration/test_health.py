"""Liveness and readiness: /readyz answers 503 unless the database is reachable and at the head migration."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import Settings
from app.devdb import with_database
from app.main import create_app
from app.migrations_info import head_revision
from tests.conftest import ADMIN_KEY


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["migration"] == head_revision()


@asynccontextmanager
async def _client_for(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_api_key=ADMIN_KEY,
        workers_enabled=False,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://checkout.test")
        async with transport as client:
            yield client


async def _admin(server_url: str, sql: str) -> None:
    engine = create_async_engine(with_database(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@asynccontextmanager
async def _scratch_database(server_url: str) -> AsyncIterator[str]:
    name = f"checkout_health_{secrets.token_hex(4)}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


async def test_readyz_is_503_when_the_server_is_unreachable() -> None:
    async with _client_for(f"postgresql://postgres@127.0.0.1:{_closed_port()}/checkout") as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"] == "unreachable"


async def test_readyz_is_503_when_the_database_does_not_exist(server_url: str) -> None:
    missing = with_database(server_url, f"checkout_missing_{secrets.token_hex(4)}")
    async with _client_for(missing) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


async def test_readyz_is_503_on_a_database_never_migrated(server_url: str) -> None:
    async with _scratch_database(server_url) as url, _client_for(url) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"], body["migration"]) == ("unavailable", "not migrated", None)


async def test_readyz_is_503_when_migrations_are_behind(server_url: str) -> None:
    async with _scratch_database(server_url) as url:
        await _execute(
            url,
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
            "INSERT INTO alembic_version VALUES ('0000')",
        )
        async with _client_for(url) as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["database"]) == ("unavailable", "not migrated")
    assert (body["migration"], body["expected_migration"]) == ("0000", head_revision())


async def test_readyz_turns_503_when_the_database_goes_away(server_url: str) -> None:
    async with _scratch_database(server_url) as url:
        await _execute(
            url,
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
            f"INSERT INTO alembic_version VALUES ('{head_revision()}')",  # noqa: S608 - our own constant
        )
        async with _client_for(url) as client:
            assert (await client.get("/readyz")).status_code == 200
            await _admin(server_url, f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
