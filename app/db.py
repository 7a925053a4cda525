"""Engine, sessionmaker and the per-request session.

Services take a session and flush; the request boundary commits. The request dependency runs with
`scope="function"`, so its commit happens when the endpoint returns and before the response is
sent: a client that got a 2xx can rely on the next request seeing the write. Flows that call a
provider take the sessionmaker instead and open short transactions around the call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 10, pool_timeout: float = 5.0) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


@asynccontextmanager
async def transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One short unit of work: commit on success, roll back on error."""
    async with sessionmaker() as session, session.begin():
        yield session
