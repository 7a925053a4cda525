"""Shared fixtures: a real PostgreSQL database per test session, migrated once, emptied per test.

`TEST_DATABASE_URL` names a server to use (a fresh database is created on it and dropped after);
without it an embedded PostgreSQL is started under `.data/test-pg`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings, normalise_database_url
from app.db import create_sessionmaker
from app.devdb import start_embedded_postgres, with_database
from app.main import create_app
from app.migrations_info import alembic_config
from app.providers.fintecture.settings import FintectureSettings

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "test-admin-key-0123456789abcdef"


def _run_in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Alembic's env.py drives its own event loop; keep it off the test loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def _admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield normalise_database_url(configured)
        return
    url, server = start_embedded_postgres(ROOT / ".data" / "test-pg")
    yield url
    del server


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"checkout_test_{secrets.token_hex(4)}"
    admin_url = with_database(server_url, "postgres")
    _run_in_thread(asyncio.run, _admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = with_database(server_url, name)
    _run_in_thread(command.upgrade, alembic_config(url), "head")
    yield url
    _run_in_thread(asyncio.run, _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


_TABLES = (
    "order_transitions, provider_events, payment_sessions, idempotency_keys, order_lines, orders, products, "
    "payout_transitions, payouts"
)


@pytest.fixture
async def clean_database(engine: AsyncEngine) -> str:
    """Every test that touches data starts from empty tables."""
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
    return str(engine.url.render_as_string(hide_password=False))


@pytest.fixture
def sessionmaker(engine: AsyncEngine, clean_database: str) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def settings(database_url: str, clean_database: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        admin_api_key=ADMIN_KEY,
        workers_enabled=False,
        rate_limit_enabled=False,  # a test that needs limits turns them on
        database_pool_prefill=False,  # pools open on demand: most tests need a connection or two
        public_url="http://checkout.test",
        storefront_url="http://shop.test/checkout/result",
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # No provider: the integration tests that need one build it themselves; a developer's `.env`
    # must not configure one behind their back.
    application = create_app(settings, [FintectureSettings(_env_file=None)])  # type: ignore[call-arg]
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on: connections to it are refused at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()
