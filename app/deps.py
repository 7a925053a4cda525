"""Typed dependencies for the routes: settings, the database, providers, workers, the outbox
dispatcher, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.events.dispatcher import OutboxDispatcher
from app.payments.workers import PaymentWorkers
from app.providers.base import Provider

# The accessors are coroutines although they never wait: FastAPI runs a plain function dependency
# in a worker thread, a hop that costs more than the request's own work on a fast path.


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def _providers(request: Request) -> Mapping[str, Provider]:
    providers: Mapping[str, Provider] = request.app.state.providers
    return providers


async def _workers(request: Request) -> PaymentWorkers:
    workers: PaymentWorkers = request.app.state.workers
    return workers


async def _dispatcher(request: Request) -> OutboxDispatcher:
    dispatcher: OutboxDispatcher = request.app.state.dispatcher
    return dispatcher


async def _request_session(
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(_settings)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]
ProvidersDep = Annotated[Mapping[str, Provider], Depends(_providers)]
WorkersDep = Annotated[PaymentWorkers, Depends(_workers)]
DispatcherDep = Annotated[OutboxDispatcher, Depends(_dispatcher)]
