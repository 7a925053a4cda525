"""The simulator's notion of time.

Token lifetimes, session expiry, pending settlement, webhook retries and the webhook `Date` header
all read `Clock.now()`, so a test can move time forward (`POST /_sim/clock/advance`) instead of
sleeping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware (UTC)."""
        ...

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (never backwards)."""
        ...


class SystemClock:
    """Wall-clock time plus whatever the control API has added."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


class FrozenClock:
    """Time that only moves when told to: deterministic schedules for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def http_date(moment: datetime) -> str:
    """RFC 2822 date in GMT, as Fintecture sends it: `Mon, 08 Jun 2020 23:11:23 GMT`."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
