"""Background loops inside the service process: the inbox worker and the sweeper.

Both are safe to run in several processes against one database (rows are claimed with
SKIP LOCKED). The inbox worker wakes as soon as a webhook is stored and otherwise polls.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.logging_setup import get_logger
from app.payments import inbox, sweeper
from app.providers.base import Provider

log = get_logger(__name__)


class PaymentWorkers:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        providers: dict[str, Provider],
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.providers = providers
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

    def wake(self) -> None:
        """A webhook was stored: process it now rather than at the next poll."""
        self._wake.set()

    async def drain_inbox(self) -> inbox.DrainResult:
        return await inbox.drain(
            self.sessionmaker, self.providers, max_attempts=self.settings.inbox_max_attempts
        )

    async def sweep(self) -> sweeper.SweepResult:
        return await sweeper.sweep(
            self.sessionmaker,
            self.providers,
            stale_after=timedelta(seconds=self.settings.sweeper_stale_after_seconds),
        )

    async def _inbox_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.inbox_poll_seconds)
            self._wake.clear()
            try:
                await self.drain_inbox()
            except Exception:  # keep the loop alive; the row stays in the inbox for the next pass
                log.exception("inbox_worker_failed")
                await asyncio.sleep(self.settings.inbox_poll_seconds)

    async def _sweeper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_seconds)
            try:
                result = await self.sweep()
                if result.claimed:
                    log.info(
                        "sweeper_pass", claimed=result.claimed, changed=result.changed, errors=result.errors
                    )
                await self.drain_inbox()
            except Exception:  # keep the loop alive; the next pass retries
                log.exception("sweeper_failed")


async def run_sweep_once(settings: Settings) -> dict[str, int]:
    """One sweeper pass and inbox drain from the command line (e.g. a cron job)."""
    import httpx

    from app.db import create_engine, create_sessionmaker
    from app.providers.registry import build_providers

    engine = create_engine(settings.database_url, pool_size=2)
    async with httpx.AsyncClient(timeout=settings.provider_timeout_seconds) as http:
        workers = PaymentWorkers(settings, create_sessionmaker(engine), build_providers(settings, http))
        try:
            swept = await workers.sweep()
            drained = await workers.drain_inbox()
        finally:
            await engine.dispose()
    return {
        "sessions_checked": swept.claimed,
        "orders_changed": swept.changed,
        "provider_errors": swept.errors,
        "events_applied": drained.applied,
        "events_retried": drained.retried,
        "events_given_up": drained.gave_up,
    }
