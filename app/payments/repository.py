"""Every query of the payments domain: finders, row locks, and the claims of the inbox and sweeper."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import Order, OrderTransition, PaymentSession, ProviderEvent
from app.orders.states import OrderStatus
from app.payments.states import OPEN
from app.providers.base import PaymentStatus

# How long past a session's expiry the provider may still report it open before we expire it.
EXPIRY_GRACE = timedelta(minutes=5)


# --- orders and sessions -------------------------------------------------------------------------


async def lock_order(db: AsyncSession, order_id: uuid.UUID) -> Order:
    """The order row, locked for this transaction and re-read (another writer may just have committed)."""
    return (
        await db.execute(
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> PaymentSession:
    return (
        await db.execute(
            select(PaymentSession)
            .where(PaymentSession.id == session_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def order_id_of_session(db: AsyncSession, session_id: uuid.UUID) -> uuid.UUID | None:
    return await db.scalar(select(PaymentSession.order_id).where(PaymentSession.id == session_id))


async def get_session(db: AsyncSession, session_id: uuid.UUID) -> PaymentSession | None:
    return await db.get(PaymentSession, session_id, populate_existing=True)


def latest_session_query(order_id: uuid.UUID) -> Select[PaymentSession]:
    """The order's most recent session opened at a provider: the one that drives the order's open
    state (a reservation the provider never confirmed does not count)."""
    return (
        select(PaymentSession)
        .where(PaymentSession.order_id == order_id, PaymentSession.provider_session_id.is_not(None))
        .order_by(PaymentSession.created_at.desc(), PaymentSession.id.desc())
        .limit(1)
    )


async def latest_session(db: AsyncSession, order_id: uuid.UUID) -> PaymentSession | None:
    return await db.scalar(latest_session_query(order_id))


async def latest_session_id(db: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    return await db.scalar(latest_session_query(order_id).with_only_columns(PaymentSession.id))


async def open_session_of(db: AsyncSession, order_id: uuid.UUID, now: datetime) -> PaymentSession | None:
    """The order's session that may still receive the payer (or is being opened), if any."""
    return await db.scalar(
        select(PaymentSession)
        .where(
            PaymentSession.order_id == order_id,
            PaymentSession.status.in_(OPEN),
            PaymentSession.expires_at > now,
        )
        .order_by(PaymentSession.created_at.desc(), PaymentSession.id.desc())
        .limit(1)
    )


async def find_session_by_state(db: AsyncSession, state_token: str) -> PaymentSession | None:
    return await db.scalar(select(PaymentSession).where(PaymentSession.state_token == state_token))


async def find_session_by_provider_id(
    db: AsyncSession, provider: str, provider_session_id: str
) -> PaymentSession | None:
    return await db.scalar(
        select(PaymentSession).where(
            PaymentSession.provider == provider, PaymentSession.provider_session_id == provider_session_id
        )
    )


async def session_that_paid(db: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    return await db.scalar(
        select(OrderTransition.payment_session_id)
        .where(OrderTransition.order_id == order_id, OrderTransition.to_status == OrderStatus.PAID)
        .order_by(OrderTransition.id.desc())
        .limit(1)
    )


async def claim_stale_sessions(
    db: AsyncSession, *, now: datetime, stale_after: timedelta, batch: int
) -> list[uuid.UUID]:
    """Sessions nobody asked the provider about since `stale_after`, claimed for one period by
    bumping `last_synced_at` (SKIP LOCKED: two processes never claim the same one)."""
    cutoff = now - stale_after
    due = (
        select(PaymentSession.id)
        .where(
            PaymentSession.provider_session_id.is_not(None),
            or_(
                PaymentSession.status.in_((PaymentStatus.OPEN, PaymentStatus.PROCESSING)),
                # A rejected payment can still succeed until its session expires.
                (PaymentSession.status == PaymentStatus.FAILED)
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


async def is_older_than(db: AsyncSession, session_id: uuid.UUID, age: timedelta) -> bool:
    """By the database's clock, which set `created_at`."""
    older = await db.scalar(
        select(PaymentSession.created_at < func.now() - age).where(PaymentSession.id == session_id)
    )
    return bool(older)


async def abandoned_reservations(db: AsyncSession, *, older_than: timedelta) -> list[uuid.UUID]:
    """Reservations whose opener never came back (its process died during the provider call)."""
    rows = await db.scalars(
        select(PaymentSession.id)
        .where(
            PaymentSession.status == PaymentStatus.CREATING,
            PaymentSession.created_at < func.now() - older_than,
        )
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def record_sync_error(db: AsyncSession, session_id: uuid.UUID, error: str) -> None:
    await db.execute(
        update(PaymentSession)
        .where(PaymentSession.id == session_id)
        .values(sync_attempts=PaymentSession.sync_attempts + 1, last_sync_error=error[:500])
    )


# --- the webhook inbox ---------------------------------------------------------------------------


async def insert_event(db: AsyncSession, values: dict[str, Any]) -> bool:
    """Store a delivery; False when this (provider, delivery id) was already stored."""
    statement = (
        insert(ProviderEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "delivery_id"])
        .returning(ProviderEvent.id)
    )
    return (await db.execute(statement)).scalar_one_or_none() is not None


def _owner_lock_id(provider: str, provider_session_id: str | None, event_id: int) -> int:
    key = (
        f"inbox\x00{provider}\x00{provider_session_id}"
        if provider_session_id
        else f"inbox-event\x00{event_id}"
    )
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


async def claim_events(
    db: AsyncSession, *, now: datetime, lease: timedelta, max_groups: int
) -> list[list[ProviderEvent]]:
    """Claim due events with a lease, grouped by the payment they are about.

    One worker at a time owns a payment: a group is claimed only under a transaction-scoped
    advisory lock on its (provider, session id) and only when no other unexpired lease covers it,
    so two processes never read and apply the same payment at once.
    """
    sibling = aliased(ProviderEvent)
    # Events of a payment another worker holds are left out here, so they never crowd the window.
    leased_sibling = (
        select(sibling.id)
        .where(
            sibling.provider == ProviderEvent.provider,
            sibling.provider_session_id == ProviderEvent.provider_session_id,
            sibling.processed_at.is_(None),
            sibling.claimed_until >= now,
        )
        .exists()
    )
    candidates = list(
        await db.scalars(
            select(ProviderEvent)
            .where(
                ProviderEvent.processed_at.is_(None),
                ProviderEvent.next_attempt_at <= now,
                or_(ProviderEvent.claimed_until.is_(None), ProviderEvent.claimed_until < now),
                ~leased_sibling,
            )
            .order_by(ProviderEvent.next_attempt_at, ProviderEvent.id)
            .limit(max_groups * 4)
            .with_for_update(skip_locked=True)
        )
    )
    groups: dict[tuple[str, str | int], list[ProviderEvent]] = {}
    for event in candidates:
        key = (event.provider, event.provider_session_id or event.id)
        if key in groups:
            groups[key].append(event)
        elif len(groups) < max_groups:
            groups[key] = [event]
    claimed: list[list[ProviderEvent]] = []
    for (provider, _), events in groups.items():
        first = events[0]
        lock_id = _owner_lock_id(provider, first.provider_session_id, first.id)
        if not await db.scalar(select(func.pg_try_advisory_xact_lock(lock_id))):
            continue
        if first.provider_session_id and await _leased_elsewhere(db, first, now):
            continue
        for event in events:
            event.claimed_until = now + lease
            event.attempts += 1
        claimed.append(events)
    await db.flush()
    return claimed


async def _leased_elsewhere(db: AsyncSession, event: ProviderEvent, now: datetime) -> bool:
    held = await db.scalar(
        select(func.count())
        .select_from(ProviderEvent)
        .where(
            ProviderEvent.provider == event.provider,
            ProviderEvent.provider_session_id == event.provider_session_id,
            ProviderEvent.processed_at.is_(None),
            ProviderEvent.claimed_until >= now,
        )
    )
    return bool(held)


async def lock_claimed_events(
    db: AsyncSession, event_ids: Sequence[int], claimed_until: datetime
) -> list[ProviderEvent]:
    """The rows this claim still holds, locked, for the transaction that settles them: none when
    the lease ran out and another worker took them over (its `claimed_until` differs)."""
    return list(
        await db.scalars(
            select(ProviderEvent)
            .where(
                ProviderEvent.id.in_(event_ids),
                ProviderEvent.claimed_until == claimed_until,
                ProviderEvent.processed_at.is_(None),
            )
            .order_by(ProviderEvent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
