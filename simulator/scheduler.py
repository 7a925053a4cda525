"""Jobs due at a time on the simulator's clock: webhook attempts, session expiry, pending settlement.

A background task runs due jobs. It sleeps until the next due time (re-checking the clock, which a
frozen test clock never moves on its own) or until woken because a job was added or the clock was
advanced. Jobs are plain callables and must not block; anything asynchronous spawns its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from simulator.clock import Clock

log = logging.getLogger("simulator.scheduler")

# A frozen clock never reaches a future job by itself; re-check at most this often (seconds).
_MIN_WAIT = 0.01
_MAX_WAIT = 30.0


@dataclass(order=True)
class _Job:
    due: datetime
    seq: int
    run: Callable[[], None] = field(compare=False)


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def at(self, due: datetime, run: Callable[[], None]) -> None:
        heapq.heappush(self._jobs, _Job(due, next(self._seq), run))
        self._wake.set()

    def next_due(self) -> datetime | None:
        return self._jobs[0].due if self._jobs else None

    def run_due(self) -> int:
        """Run every job due by now, in due-time then insertion order; returns how many ran."""
        ran = 0
        now = self._clock.now()
        while self._jobs and self._jobs[0].due <= now:
            job = heapq.heappop(self._jobs)
            try:
                job.run()
            except Exception:
                log.exception("scheduled job failed")
            ran += 1
        return ran

    def wake(self) -> None:
        self._wake.set()

    def clear(self) -> None:
        self._jobs.clear()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="simulator-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            self.run_due()
            self._wake.clear()
            due = self.next_due()
            timeout = None
            if due is not None:
                remaining = (due - self._clock.now()).total_seconds()
                timeout = min(max(remaining, _MIN_WAIT), _MAX_WAIT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
