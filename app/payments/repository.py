"""Every query of the payments domain: finders, row locks, and the claims of the inbox and sweeper."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import driver_connection
from app.models import InboxOutcome, Order, OrderTransition, PaymentSession, ProviderEvent, Refund
from app.orders.states import OrderStatus
from app.payments.states import OPEN, REFUND_COUNTED, REFUND_OPEN
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


# --- opening a payment session ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockedOrder:
    """The order a session is being opened for, read under its row lock (`writer.reserve_session`)."""

    id: uuid.UUID
    status: OrderStatus
    reference: str
    total_amount: int
    currency: str
    customer_name: str
    customer_email: str
    customer_phone: str | None
    customer_company: str | None
    customer_address: dict[str, Any] | None


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


async def session_under_review(db: AsyncSession, order_id: uuid.UUID) -> uuid.UUID | None:
    """The payment session named by the transition that last sent the order to review, if any."""
    return await db.scalar(
        select(OrderTransition.payment_session_id)
        .where(OrderTransition.order_id == order_id, OrderTransition.to_status == OrderStatus.NEEDS_REVIEW)
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


# --- refunds -------------------------------------------------------------------------------------


async def lock_refund(db: AsyncSession, refund_id: uuid.UUID) -> Refund:
    return (
        await db.execute(
            select(Refund)
            .where(Refund.id == refund_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


async def order_id_of_refund(db: AsyncSession, refund_id: uuid.UUID) -> uuid.UUID | None:
    return await db.scalar(select(Refund.order_id).where(Refund.id == refund_id))


async def get_refund(db: AsyncSession, refund_id: uuid.UUID) -> Refund | None:
    return await db.get(Refund, refund_id, populate_existing=True)


async def find_refund_by_provider_id(
    db: AsyncSession, provider: str, provider_refund_id: str
) -> Refund | None:
    return await db.scalar(
        select(Refund).where(Refund.provider == provider, Refund.provider_refund_id == provider_refund_id)
    )


async def refund_by_idempotency_key(db: AsyncSession, order_id: uuid.UUID, key: str) -> Refund | None:
    return await db.scalar(
        select(Refund)
        .where(Refund.order_id == order_id, Refund.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


async def refunds_of(db: AsyncSession, order_id: uuid.UUID) -> list[Refund]:
    return list(
        await db.scalars(
            select(Refund).where(Refund.order_id == order_id).order_by(Refund.created_at, Refund.id)
        )
    )


async def open_refund_ids(db: AsyncSession, order_id: uuid.UUID) -> list[uuid.UUID]:
    """The order's refunds at the provider whose outcome is not known yet."""
    return list(
        await db.scalars(
            select(Refund.id).where(
                Refund.order_id == order_id,
                Refund.status.in_(REFUND_OPEN),
                Refund.provider_refund_id.is_not(None),
            )
        )
    )


async def refund_total(
    db: AsyncSession,
    order_id: uuid.UUID,
    statuses: frozenset[PaymentStatus] = REFUND_COUNTED,
    *,
    excluding: uuid.UUID | None = None,
) -> int:
    """Minor units of the order's refunds in `statuses` (by default every one that counts against
    what was paid, reservations included)."""
    query = select(func.coalesce(func.sum(Refund.amount), 0)).where(
        Refund.order_id == order_id, Refund.status.in_(statuses)
    )
    if excluding is not None:
        query = query.where(Refund.id != excluding)
    return int(await db.scalar(query) or 0)


async def claim_stale_refunds(
    db: AsyncSession, *, now: datetime, stale_after: timedelta, batch: int
) -> list[uuid.UUID]:
    """Open refunds nobody asked the provider about since `stale_after`, claimed for one period
    like sessions (SKIP LOCKED)."""
    cutoff = now - stale_after
    due = (
        select(Refund.id)
        .where(
            Refund.provider_refund_id.is_not(None),
            Refund.status.in_(REFUND_OPEN),
            Refund.created_at <= cutoff,
            or_(Refund.last_synced_at.is_(None), Refund.last_synced_at <= cutoff),
        )
        .order_by(Refund.last_synced_at.asc().nulls_first())
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    claimed = await db.scalars(
        update(Refund)
        .where(Refund.id.in_(due.scalar_subquery()))
        .values(last_synced_at=now)
        .returning(Refund.id)
    )
    return list(claimed)


async def abandoned_refund_reservations(db: AsyncSession, *, older_than: timedelta) -> list[uuid.UUID]:
    """Refund reservations whose requester never came back (its process died at the provider)."""
    rows = await db.scalars(
        select(Refund.id)
        .where(Refund.status == PaymentStatus.CREATING, Refund.created_at < func.now() - older_than)
        .with_for_update(skip_locked=True)
    )
    return list(rows)


async def refund_is_older_than(db: AsyncSession, refund_id: uuid.UUID, age: timedelta) -> bool:
    older = await db.scalar(select(Refund.created_at < func.now() - age).where(Refund.id == refund_id))
    return bool(older)


async def record_refund_sync_error(db: AsyncSession, refund_id: uuid.UUID, error: str) -> None:
    await db.execute(
        update(Refund)
        .where(Refund.id == refund_id)
        .values(sync_attempts=Refund.sync_attempts + 1, last_error=error[:500])
    )


# --- the webhook inbox ---------------------------------------------------------------------------


# A delivery is stored by one statement in autocommit, the whole unit of work of the webhook
# route, written for the driver (prepared once per connection, no ORM or Core on the hot path).
_STORE_EVENT_SQL = (
    "INSERT INTO provider_events"
    " (provider, delivery_id, event_type, provider_session_id, content_type, raw_body, payload, attempts)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, 0)"
    " ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING id"
)


async def store_event(
    engine: AsyncEngine,
    *,
    provider: str,
    delivery_id: str,
    event_type: str | None,
    provider_session_id: str | None,
    content_type: str | None,
    raw_body: bytes,
    payload_json: str,
) -> bool:
    """Store a delivery in its own implicit transaction; False when this (provider, delivery id)
    was already stored. `payload_json` is the payload serialised as JSON."""
    async with driver_connection(engine) as conn:
        event_id = await conn.fetchval(
            _STORE_EVENT_SQL,
            provider,
            delivery_id,
            event_type,
            provider_session_id,
            content_type,
            raw_body,
            payload_json,
        )
    return event_id is not None


def _owner_lock_id(provider: str, provider_session_id: str | None, event_id: int) -> int:
    key = (
        f"inbox\x00{provider}\x00{provider_session_id}"
        if provider_session_id
        else f"inbox-event\x00{event_id}"
    )
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class ClaimedGroup:
    """Claimed events about one payment (or one event naming none), and the lease that holds them."""

    provider: str
    provider_session_id: str | None
    event_ids: tuple[int, ...]
    claimed_until: datetime
    # Our payment session with that provider id, found by the claim itself (None: a refund's or a
    # payout's session at the provider, or one not committed yet).
    payment_session_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None


def due_events_query(now: datetime, *, limit: int) -> Select[int, str, str | None]:
    """The claim's candidates: due events nobody holds, oldest first, locked (SKIP LOCKED).

    It reads through the partial index on unprocessed events, so it costs the same however many
    processed events the table keeps (`bench/explain_claim.py`).
    """
    leased = select(ProviderEvent.provider, ProviderEvent.provider_session_id).where(
        ProviderEvent.processed_at.is_(None),
        ProviderEvent.claimed_until >= now,
        ProviderEvent.provider_session_id.is_not(None),
    )
    return (
        select(ProviderEvent.id, ProviderEvent.provider, ProviderEvent.provider_session_id)
        .where(
            ProviderEvent.processed_at.is_(None),
            ProviderEvent.next_attempt_at <= now,
            or_(ProviderEvent.claimed_until.is_(None), ProviderEvent.claimed_until < now),
            # A payment another worker holds is left out, so its events never crowd the window
            # (NOT IN over a small hashed set: linear however large the backlog).
            or_(
                ProviderEvent.provider_session_id.is_(None),
                tuple_(ProviderEvent.provider, ProviderEvent.provider_session_id).not_in(leased),
            ),
        )
        .order_by(ProviderEvent.next_attempt_at, ProviderEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


async def claim_events(
    db: AsyncSession, *, now: datetime, lease: timedelta, max_groups: int
) -> list[ClaimedGroup]:
    """Claim due events with a lease, grouped by the payment they are about.

    One worker at a time owns a payment: a group is claimed only under a transaction-scoped
    advisory lock on its (provider, session id) and only when no other unexpired lease covers it,
    so two processes never read and apply the same payment at once. A handful of statements
    whatever the batch size: the candidates, the advisory locks, the leases held elsewhere, the
    update.
    """
    rows = (await db.execute(due_events_query(now, limit=max_groups * 4))).all()
    groups: dict[int, tuple[str, str | None, list[int]]] = {}
    for event_id, provider, session_id in rows:
        lock_id = _owner_lock_id(provider, session_id, event_id)
        if lock_id in groups:
            groups[lock_id][2].append(event_id)
        elif len(groups) < max_groups:
            groups[lock_id] = (provider, session_id, [event_id])
    if not groups:
        return []
    locked = await db.execute(
        text("SELECT k, pg_try_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS t(k)"),
        {"keys": list(groups)},
    )
    owned = {key: groups[key] for key, acquired in locked.all() if acquired}
    pairs = [(provider, session_id) for provider, session_id, _ in owned.values() if session_id]
    held: set[tuple[str, str | None]] = set()
    if pairs:
        held = {
            (provider, session_id)
            for provider, session_id in (
                await db.execute(
                    select(ProviderEvent.provider, ProviderEvent.provider_session_id)
                    .where(
                        ProviderEvent.processed_at.is_(None),
                        ProviderEvent.claimed_until >= now,
                        tuple_(ProviderEvent.provider, ProviderEvent.provider_session_id).in_(pairs),
                    )
                    .distinct()
                )
            ).all()
        }
    claimed = [
        (provider, session_id, ids)
        for provider, session_id, ids in owned.values()
        if session_id is None or (provider, session_id) not in held
    ]
    if not claimed:
        return []
    claimed_until = now + lease
    # With a payment's lock held, every event still waiting about it is claimed too, not only the
    # ones inside the candidate window: one read of the payment answers them all, so under a flood
    # of deliveries the backlog shrinks by whole payments rather than by a window of rows.
    claimed_pairs = [(provider, session_id) for provider, session_id, _ in claimed if session_id]
    waiting = and_(
        ProviderEvent.processed_at.is_(None),
        tuple_(ProviderEvent.provider, ProviderEvent.provider_session_id).in_(claimed_pairs),
        or_(ProviderEvent.claimed_until.is_(None), ProviderEvent.claimed_until < now),
    )
    listed = ProviderEvent.id.in_([event_id for _, _, ids in claimed for event_id in ids])
    # A waiting event that another worker's candidate scan holds is skipped, not waited for: that
    # worker may in turn wait for a row this transaction holds, and the two claims deadlock (seen
    # with two processes under webhook load). A skipped event stays due and is claimed once this
    # lease is settled.
    free = (
        select(ProviderEvent.id)
        .where(or_(listed, waiting) if claimed_pairs else listed)
        .with_for_update(skip_locked=True)
    )
    taken = await db.execute(
        update(ProviderEvent)
        .where(ProviderEvent.id.in_(free))
        .values(claimed_until=claimed_until, attempts=ProviderEvent.attempts + 1)
        .returning(ProviderEvent.id, ProviderEvent.provider, ProviderEvent.provider_session_id)
        .execution_options(synchronize_session=False)
    )
    by_payment: dict[tuple[str, str], list[int]] = {}
    for event_id, provider, session_id in taken.all():
        if session_id is not None:
            by_payment.setdefault((provider, session_id), []).append(event_id)
    claimed = [
        (provider, session_id, sorted(by_payment[(provider, session_id)]) if session_id else ids)
        for provider, session_id, ids in claimed
    ]
    sessions = await _payment_sessions_by_provider_id(
        db, [(provider, session_id) for provider, session_id, _ in claimed if session_id]
    )
    return [
        ClaimedGroup(
            provider, session_id, tuple(ids), claimed_until, *sessions.get((provider, session_id), ())
        )
        for provider, session_id, ids in claimed
    ]


async def _payment_sessions_by_provider_id(
    db: AsyncSession, pairs: Sequence[tuple[str, str | None]]
) -> dict[tuple[str, str | None], tuple[uuid.UUID, uuid.UUID]]:
    """Our payment sessions (and their orders) for these (provider, provider session id) pairs, in
    one statement."""
    if not pairs:
        return {}
    rows = await db.execute(
        select(
            PaymentSession.provider,
            PaymentSession.provider_session_id,
            PaymentSession.id,
            PaymentSession.order_id,
        ).where(tuple_(PaymentSession.provider, PaymentSession.provider_session_id).in_(pairs))
    )
    return {(provider, session_id): (id_, order_id) for provider, session_id, id_, order_id in rows.all()}


async def settle_claimed_events(
    db: AsyncSession, event_ids: Sequence[int], claimed_until: datetime, *, now: datetime
) -> int:
    """Mark the events this claim still holds as applied, in the transaction that applies them; 0
    when the lease ran out and another worker took them over (its `claimed_until` differs), and
    then the caller must not apply anything. One statement: the row locks it takes also keep a
    second worker from settling the same events until this transaction ends."""
    settled = await db.execute(
        update(ProviderEvent)
        .where(
            ProviderEvent.id.in_(event_ids),
            ProviderEvent.claimed_until == claimed_until,
            ProviderEvent.processed_at.is_(None),
        )
        .values(outcome=InboxOutcome.APPLIED, processed_at=now, last_error=None, claimed_until=None)
        .returning(ProviderEvent.id)
        .execution_options(synchronize_session=False)
    )
    return len(settled.all())


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


async def reset_events_for_replay(
    db: AsyncSession,
    *,
    now: datetime,
    event_ids: Sequence[int] | None = None,
    provider: str | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    outcome: InboxOutcome | None = None,
) -> list[int]:
    """Make stored webhook events due again, so the inbox worker reads their payments from the
    provider once more (the writer applies nothing twice). Events a worker holds right now are
    left to it. The ids of the events reset."""
    query = update(ProviderEvent).where(
        or_(
            ProviderEvent.processed_at.is_not(None),
            ProviderEvent.claimed_until.is_(None),
            ProviderEvent.claimed_until < now,
        )
    )
    if event_ids is not None:
        query = query.where(ProviderEvent.id.in_(event_ids))
    if provider is not None:
        query = query.where(ProviderEvent.provider == provider)
    if received_from is not None:
        query = query.where(ProviderEvent.received_at >= received_from)
    if received_to is not None:
        query = query.where(ProviderEvent.received_at < received_to)
    if outcome is not None:
        query = query.where(ProviderEvent.outcome == outcome)
    ids = await db.scalars(
        query.values(
            processed_at=None,
            outcome=None,
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            last_error=None,
        ).returning(ProviderEvent.id)
    )
    return sorted(ids.all())
