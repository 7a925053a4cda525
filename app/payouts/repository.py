"""Every query of the payouts domain: finders, the row lock, the operator's list and the sweeper's
claims."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payout, PayoutTransition
from app.payouts.states import OPEN
from app.providers.base import PayoutStatus


async def lock_payout(db: AsyncSession, payout_id: uuid.UUID) -> Payout:
    """The payout row, locked for this transaction and re-read (another writer may just have
    committed)."""
    return (
        await db.execute(
            select(Payout)
            .where(Payout.id == payout_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def get_payout(db: AsyncSession, payout_id: uuid.UUID) -> Payout | None:
    return await db.get(Payout, payout_id, populate_existing=True)


async def payout_by_idempotency_key(db: AsyncSession, key: str) -> Payout | None:
    return await db.scalar(
        select(Payout).where(Payout.idempotency_key == key).execution_options(populate_existing=True)
    )


async def find_by_state(db: AsyncSession, state_token: str) -> Payout | None:
    return await db.scalar(select(Payout).where(Payout.state_token == state_token))


async def find_id_by_provider_id(
    db: AsyncSession, provider: str, provider_payout_id: str
) -> uuid.UUID | None:
    return await db.scalar(
        select(Payout.id).where(Payout.provider == provider, Payout.provider_payout_id == provider_payout_id)
    )


async def transitions_of(db: AsyncSession, payout_id: uuid.UUID) -> list[PayoutTransition]:
    return list(
        await db.scalars(
            select(PayoutTransition)
            .where(PayoutTransition.payout_id == payout_id)
            .order_by(PayoutTransition.id)
        )
    )


async def page_of_payouts(
    db: AsyncSession,
    *,
    status: PayoutStatus | None,
    reference: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Payout]:
    """Newest first, keyset-paginated on (created_at, id): stable while new payouts arrive."""
    stmt = select(Payout)
    if status is not None:
        stmt = stmt.where(Payout.status == status)
    if reference is not None:
        stmt = stmt.where(Payout.reference == reference)
    if created_from is not None:
        stmt = stmt.where(Payout.created_at >= created_from)
    if created_to is not None:
        stmt = stmt.where(Payout.created_at < created_to)
    if after is not None:
        stmt = stmt.where(tuple_(Payout.created_at, Payout.id) < tuple_(*after))
    stmt = stmt.order_by(Payout.created_at.desc(), Payout.id.desc()).limit(limit)
    return list(await db.scalars(stmt))


async def claim_stale_payouts(
    db: AsyncSession, *, now: datetime, stale_after: timedelta, payee_stale_after: timedelta, batch: int
) -> list[uuid.UUID]:
    """Payouts still moving at the provider that nobody asked about since `stale_after` (since
    `payee_stale_after` while they wait for their payee, which may take days), claimed for one
    period by bumping `last_synced_at` (SKIP LOCKED: two processes never claim the same one)."""
    cutoff = now - stale_after
    payee_cutoff = now - max(stale_after, payee_stale_after)
    due = (
        select(Payout.id)
        .where(
            Payout.provider_payout_id.is_not(None),
            Payout.status.in_(OPEN),
            Payout.created_at <= cutoff,
            or_(
                Payout.last_synced_at.is_(None),
                (Payout.status != PayoutStatus.AWAITING_PAYEE) & (Payout.last_synced_at <= cutoff),
                Payout.last_synced_at <= payee_cutoff,
            ),
        )
        .order_by(Payout.last_synced_at.asc().nulls_first())
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    claimed = await db.scalars(
        update(Payout)
        .where(Payout.id.in_(due.scalar_subquery()))
        .values(last_synced_at=now)
        .returning(Payout.id)
    )
    return list(claimed)


async def abandoned_reservations(db: AsyncSession, *, older_than: timedelta) -> list[uuid.UUID]:
    """Reservations whose requester never came back (its process died during the provider call)."""
    rows = await db.scalars(
        select(Payout.id)
        .where(Payout.status == PayoutStatus.CREATING, Payout.created_at < func.now() - older_than)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def record_sync_error(db: AsyncSession, payout_id: uuid.UUID, error: str) -> None:
    await db.execute(
        update(Payout)
        .where(Payout.id == payout_id)
        .values(sync_attempts=Payout.sync_attempts + 1, last_error=error[:500])
    )
