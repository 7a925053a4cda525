"""Background loops inside the service process: the inbox worker and the sweeper.

Both are safe to run in several processes against one database (rows are claimed with leases
under SKIP LOCKED). The inbox worker wakes as soon as a webhook is stored and otherwise polls.
Both outlive a database outage: they log its start and its end in one line each, and the inbox
worker backs off meanwhile (a stored webhook, which means the database is back, wakes it early).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import database_error_summary, is_database_unavailable, is_pool_exhausted
from app.logging_setup import get_logger
from app.payments import inbox, sweeper
from app.payments.service import reservation_timeout
from app.providers.base import Provider

log = get_logger(__name__)

# The longest a worker waits between attempts while its passes keep failing.
MAX_FAILURE_BACKOFF_SECONDS = 10.0


class FailureBackoff:
    """A background loop's run of failed passes: how long to wait before the next one (doubling
    from `base` up to MAX_FAILURE_BACKOFF_SECONDS), and its log lines. A database out of reach is
    logged once when the run starts and once when a pass succeeds again; any other failure is a
    bug and is logged each time, with its traceback."""

    def __init__(self, loop: str, base: float) -> None:
        self.loop = loop
        self.base = base
        self.failures = 0
        self._started = 0.0
        self._database_down = False

    def failed(self, exc: Exception) -> float:
        """Record a failed pass; the seconds to wait before the next one."""
        if self.failures == 0:
            self._started = time.monotonic()
        self.failures += 1
        if is_database_unavailable(exc) or is_pool_exhausted(exc):
            if not self._database_down:
                self._database_down = True
                log.warning(f"{self.loop}_database_unavailable", error=database_error_summary(exc))
        else:
            log.error(f"{self.loop}_failed", failures=self.failures, exc_info=exc)
        return float(min(self.base * 2 ** min(self.failures - 1, 30), MAX_FAILURE_BACKOFF_SECONDS))

    def succeeded(self) -> None:
        if self.failures:
            log.info(
                f"{self.loop}_recovered",
                failed_passes=self.failures,
                seconds=round(time.monotonic() - self._started, 1),
            )
        self.failures = 0
        self._database_down = False


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

    def notify(self) -> None:
        """Inbox events were stored (or made due again) and committed: process them now rather
        than at the next poll."""
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
        failures = FailureBackoff("inbox_worker", base=self.settings.inbox_poll_seconds)
        wait = self.settings.inbox_poll_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            self._wake.clear()
            try:
                await self.drain_inbox()
            except Exception as exc:  # keep the loop alive; the rows stay in the inbox for the next pass
                wait = failures.failed(exc)
            else:
                failures.succeeded()
                wait = self.settings.inbox_poll_seconds

    async def _sweeper_loop(self) -> None:
        failures = FailureBackoff("sweeper", base=self.settings.sweeper_interval_seconds)
        while True:
            await asyncio.sleep(self.settings.sweeper_interval_seconds)
            try:
                result = await self.sweep()
                if result.claimed or result.refunds_claimed or result.payouts_claimed or result.abandoned:
                    log.info(
                        "sweeper_pass",
                        claimed=result.claimed,
                        refunds_claimed=result.refunds_claimed,
                        payouts_claimed=result.payouts_claimed,
                        changed=result.changed,
                        errors=result.errors,
                        abandoned=result.abandoned,
                    )
                await self.drain_inbox()
            except Exception as exc:  # keep the loop alive; the next pass retries
                failures.failed(exc)
            else:
                failures.succeeded()
