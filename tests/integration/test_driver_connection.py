"""`driver_connection`: the pool's own asyncpg connection for a one-statement hot path (a webhook's
insert, an order, a session's reservation). After a statement, whether it succeeded or failed, the
connection goes back to the pool open and is used again, and sessions that take it next work as
before; a connection lost or cancelled under a statement is discarded and replaced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy.ext.asyncio.engine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import db
from app.db import DatabaseUnavailable, create_engine, create_sessionmaker, driver_connection, transaction


@pytest.fixture
async def small_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backend(engine: AsyncEngine) -> int:
    async with driver_connection(engine) as conn:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def test_connections_go_back_to_the_pool_open_and_are_used_again(small_engine: AsyncEngine) -> None:
    backends = {await _backend(small_engine) for _ in range(50)}
    pool = small_engine.sync_engine.pool
    assert len(backends) == 1  # one at a time: the same connection, never reopened
    assert (pool.checkedout(), pool.checkedin()) == (0, 1)
    # Two at once use the pool's two connections, and no third.
    both = await asyncio.gather(*(_backend(small_engine) for _ in range(2)))
    more = await asyncio.gather(*(_backend(small_engine) for _ in range(6)))
    assert len(set(both)) == 2 and set(more) == set(both)
    # A session takes the same connections afterwards and its transactions work as usual.
    sessionmaker = create_sessionmaker(small_engine)
    async with transaction(sessionmaker) as session:
        assert await session.scalar(text("SELECT pg_backend_pid()")) in set(both)
        assert await session.scalar(text("SELECT count(*) FROM pg_prepared_xacts")) == 0
    assert pool.checkedout() == 0


def count_greenlets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every greenlet SQLAlchemy's async API starts from now on (each maps a new interpreter stack):
    the check-in's (app.db) and the check-out's (AsyncEngine.raw_connection)."""
    spawned: list[Any] = []
    real = db.greenlet_spawn

    async def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        spawned.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(db, "greenlet_spawn", counting)
    monkeypatch.setattr(sqlalchemy.ext.asyncio.engine, "greenlet_spawn", counting)
    return spawned


async def test_a_statement_on_a_ready_connection_starts_no_greenlet(
    small_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend(small_engine)  # the pool opens its connection: that awaits
    spawned = count_greenlets(monkeypatch)
    for _ in range(5):
        assert await _backend(small_engine) == first
    assert spawned == []
    assert small_engine.sync_engine.pool.checkedout() == 0


async def test_a_check_out_that_must_connect_goes_through_a_greenlet(
    small_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spawned = count_greenlets(monkeypatch)
    # An empty pool: the first check-out opens a connection.
    await _backend(small_engine)
    assert len(spawned) == 1
    # Every connection in use: the next check-out waits for one to come back.
    async with driver_connection(small_engine), driver_connection(small_engine):
        waiting = asyncio.create_task(_backend(small_engine))
        await asyncio.sleep(0.05)
        assert not waiting.done()
    await waiting
    assert small_engine.sync_engine.pool.checkedout() == 0


def _pooled_record(engine: AsyncEngine) -> Any:
    (record,) = engine.sync_engine.pool._pool._queue._queue
    return record


async def test_a_pool_that_pings_on_check_out_checks_out_through_a_greenlet(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        await _backend(engine)
        pool = engine.sync_engine.pool
        assert db._checkout_awaits_nothing(pool)
        pool._pre_ping = True  # the ping is a round trip: it awaits
        assert not db._checkout_awaits_nothing(pool)
        await _backend(engine)
        assert pool.checkedout() == 0
    finally:
        await engine.dispose()


@pytest.mark.parametrize("reason", ["recycle", "pool invalidated", "soft invalidated", "server closed it"])
async def test_a_connection_that_must_be_replaced_is_replaced_through_a_greenlet(
    small_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    # Each case in which SQLAlchemy's check-out reconnects, and so awaits: if an upgrade of
    # SQLAlchemy moves what `_checkout_awaits_nothing` reads, the check-out fails here.
    before = await _backend(small_engine)
    pool = small_engine.sync_engine.pool
    record = _pooled_record(small_engine)
    assert db._checkout_awaits_nothing(pool)
    await asyncio.sleep(0.01)  # what follows happens after the connection was opened
    if reason == "recycle":
        record.starttime -= 1801
    elif reason == "pool invalidated":
        pool._invalidate_time = time.time()
    elif reason == "soft invalidated":
        record._soft_invalidate_time = time.time()
    else:
        await record.driver_connection.close()
    assert not db._checkout_awaits_nothing(pool)
    spawned = count_greenlets(monkeypatch)
    assert await _backend(small_engine) != before  # a new connection, opened in a greenlet
    assert len(spawned) == 1
    assert pool.checkedout() == 0
    assert db._checkout_awaits_nothing(pool)  # and the new one is ready


async def test_a_failed_statement_leaves_the_connection_in_the_pool_and_usable(
    small_engine: AsyncEngine,
) -> None:
    before = await _backend(small_engine)
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with driver_connection(small_engine) as conn:
            await conn.fetchval("SELECT 1 / 0")
    assert small_engine.sync_engine.pool.checkedout() == 0
    async with driver_connection(small_engine) as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") == before
        assert not conn.is_in_transaction()


async def test_a_cancelled_statement_discards_its_connection(small_engine: AsyncEngine) -> None:
    before = await _backend(small_engine)
    started = asyncio.Event()

    async def slow() -> None:
        async with driver_connection(small_engine) as conn:
            started.set()
            await conn.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pool = small_engine.sync_engine.pool
    assert pool.checkedout() == 0
    # Its state was unknown: the next statement runs on a new connection.
    assert await _backend(small_engine) != before


async def test_a_connection_lost_under_a_statement_is_replaced(
    small_engine: AsyncEngine, database_url: str
) -> None:
    before = await _backend(small_engine)
    admin = create_engine(database_url, pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with driver_connection(small_engine) as conn:
                async with admin.connect() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
                await conn.fetchval("SELECT 1")
    finally:
        await admin.dispose()
    assert small_engine.sync_engine.pool.checkedout() == 0
    assert await _backend(small_engine) != before
