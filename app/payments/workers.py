"""Background loops inside the service process: the inbox worker and the sweeper.

Both are safe to run in several processes against one database (rows are claimed with leases
under SKIP LOCKED). The inbox worker wakes as soon as a webhook is stored and otherwise polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.logging_setup import get_logger
from app.payments import inbox, sweeper
from app.payments.service import reservation_timeout
from app.providers.base import Provider

log = get_logger(__name__)


class PaymentWorkers:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        providers: Mapping[str, Provider],
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.providers = providers
        self.inbox = inbox.InboxProcessor(
            sessionmaker,
            providers,
            max_attempts=settings.inbox_max_attempts,
            concurrency=settings.inbox_concurrency,
            lease=timedelta(seconds=settings.inbox_lease_seconds),
        )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._inbox_loop(), name="inbox-worker"),
            asyncio.create_task(self._sweeper_loop(), name="sweeper"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def wake(self) -> None:
        """A webhook was stored: process it now rather than at the next poll. A coroutine, so a
        route's background task runs it on the event loop rather than in a thread."""
        self._wake.set()

    async def drain_inbox(self) -> inbox.DrainResult:
        return await self.inbox.drain()

    async def sweep(self) -> sweeper.SweepResult:
        return await sweeper.sweep(
            self.sessionmaker,
            self.providers,
            stale_after=timedelta(seconds=self.settings.sweeper_stale_after_seconds),
            reservation_timeout=reservation_timeout(self.settings),
        )

    async def _inbox_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.inbox_poll_seconds)
            self._wake.clear()
            try:
                await self.drain_inbox()
            except Exception:  # keep the loop alive; the rows stay in the inbox for the next pass
                log.exception("inbox_worker_failed")
                await asyncio.sleep(self.settings.inbox_poll_seconds)

    async def _sweeper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_seconds)
            try:
                result = await self.sweep()
                if result.claimed or result.abandoned:
                    log.info(
                        "sweeper_pass",
                        claimed=result.claimed,
                        changed=result.changed,
                        errors=result.errors,
                        abandoned=result.abandoned,
                    )
                await self.drain_inbox()
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("sweeper_failed")
