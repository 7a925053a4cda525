"""The sweeper: the polling fallback for callbacks that never came and webhooks that were lost.

Each pass claims a batch of unsettled sessions that nobody asked about recently (claim = bump
`last_synced_at` under FOR UPDATE SKIP LOCKED and commit), then asks the provider about each one in
its own transaction. Two service processes never claim the same session in one period.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import transaction
from app.logging_setup import get_logger
from app.models import PaymentSession
from app.orders.states import OrderStatus
from app.payments.reconcile import Source
from app.payments.service import EXPIRY_GRACE, OPEN_STATUSES, sync_session, utcnow
from app.providers.base import Provider, ProviderError

log = get_logger(__name__)


@dataclass
class SweepResult:
    claimed: int = 0
    changed: int = 0
    errors: int = 0


async def claim_stale_sessions(
    sessionmaker: async_sessionmaker[AsyncSession], *, stale_after: timedelta, batch: int
) -> list[uuid.UUID]:
    now = utcnow()
    cutoff = now - stale_after
    async with transaction(sessionmaker) as db:
        due = (
            select(PaymentSession.id)
            .where(
                or_(
                    PaymentSession.status.in_(OPEN_STATUSES),
                    # A rejected payment can still succeed until its session expires.
                    (PaymentSession.status == OrderStatus.FAILED.value)
                    & (PaymentSession.expires_at + EXPIRY_GRACE > now),
                ),
                PaymentSession.created_at <= cutoff,
                or_(PaymentSession.last_synced_at.is_(None), PaymentSession.last_synced_at <= cutoff),
            )
            .order_by(PaymentSession.last_synced_at.asc().nulls_first())
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        claimed = await db.scalars(
            update(PaymentSession)
            .where(PaymentSession.id.in_(due.scalar_subquery()))
            .values(last_synced_at=now)
            .returning(PaymentSession.id)
        )
        return list(claimed)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    providers: dict[str, Provider],
    *,
    stale_after: timedelta,
    batch: int = 50,
) -> SweepResult:
    result = SweepResult()
    for session_id in await claim_stale_sessions(sessionmaker, stale_after=stale_after, batch=batch):
        result.claimed += 1
        try:
            async with transaction(sessionmaker) as db:
                session = await db.get(PaymentSession, session_id)
                if session is None:
                    continue
                outcome = await sync_session(db, session, providers, source=Source.POLL, expire_if_stale=True)
                result.changed += int(outcome.order_changed)
        except Exception as exc:  # one bad session must not stop the pass
            result.errors += 1
            error = str(exc) if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {exc}"
            await _record_sync_error(sessionmaker, session_id, error)
            log.warning("sweeper_sync_failed", session_id=str(session_id), error=error)
    return result


async def _record_sync_error(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, error: str
) -> None:
    async with transaction(sessionmaker) as db:
        await db.execute(
            update(PaymentSession)
            .where(PaymentSession.id == session_id)
            .values(sync_attempts=PaymentSession.sync_attempts + 1, last_sync_error=error[:500])
        )
