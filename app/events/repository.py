"""Every outbox query: routing events to endpoints, the in-order claim, outcomes, reads, replays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.models import DeliveryStatus, OutboundDelivery, OutboundDeliveryAttempt, OutboundEvent

# One process routes at a time, so events are routed in id order whatever the number of processes.
_ROUTING_LOCK = 0x6F7574626F78  # "outbox"


async def route_new_events(db: AsyncSession, endpoints: Sequence[str], *, limit: int = 1000) -> int:
    """Give events not yet routed one pending delivery per endpoint; how many events were routed.

    Routing in id order under one lock means a stream's deliveries exist before those of its later
    events, which the in-order claim relies on.
    """
    if not endpoints:
        return 0
    locked = await db.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _ROUTING_LOCK})
    if not locked:
        return 0  # another process is routing right now
    rows = (
        await db.execute(
            select(OutboundEvent.id, OutboundEvent.stream)
            .where(OutboundEvent.routed_at.is_(None))
            .order_by(OutboundEvent.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return 0
    await db.execute(
        insert(OutboundDelivery)
        .values(
            [
                {
                    "event_id": event_id,
                    "endpoint_url": url,
                    "stream": stream,
                    "status": DeliveryStatus.PENDING,
                    "attempts": 0,
                }
                for event_id, stream in rows
                for url in endpoints
            ]
        )
        .on_conflict_do_nothing()
    )
    await db.execute(
        update(OutboundEvent)
        .where(OutboundEvent.id.in_([event_id for event_id, _ in rows]))
        .values(routed_at=func.now())
    )
    return len(rows)


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: int
    endpoint_url: str
    attempts: int
    claimed_until: datetime
    webhook_id: str
    event_type: str
    event_created_at: datetime
    data: dict[str, Any]


async def claim_deliveries(
    db: AsyncSession, endpoints: Sequence[str], *, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedDelivery]:
    """Claim due deliveries with a lease, only the first pending one of each (endpoint, stream).

    A later event of a stream waits while an earlier one is pending (due, backing off, or claimed
    by another process); delivered and parked ones no longer hold it back. SKIP LOCKED: two
    processes never claim the same row, and a claimed head keeps its successors out of the other's
    reach, so a stream is sent one event at a time, in order.
    """
    if not endpoints:
        return []
    earlier = aliased(OutboundDelivery)
    due = (
        select(OutboundDelivery.id)
        .where(
            OutboundDelivery.status == DeliveryStatus.PENDING,
            OutboundDelivery.endpoint_url.in_(endpoints),
            OutboundDelivery.next_attempt_at <= now,
            (OutboundDelivery.claimed_until.is_(None)) | (OutboundDelivery.claimed_until < now),
            ~exists().where(
                earlier.status == DeliveryStatus.PENDING,
                earlier.endpoint_url == OutboundDelivery.endpoint_url,
                earlier.stream == OutboundDelivery.stream,
                earlier.event_id < OutboundDelivery.event_id,
            ),
        )
        .order_by(OutboundDelivery.event_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await db.scalars(due)).all())  # locked until this transaction ends
    if not ids:
        return []
    claimed_until = now + lease
    await db.execute(
        update(OutboundDelivery).where(OutboundDelivery.id.in_(ids)).values(claimed_until=claimed_until)
    )
    rows = await db.execute(
        select(OutboundDelivery, OutboundEvent)
        .join(OutboundEvent, OutboundEvent.id == OutboundDelivery.event_id)
        .where(OutboundDelivery.id.in_(ids))
        .order_by(OutboundDelivery.event_id)
    )
    return [
        ClaimedDelivery(
            delivery.id,
            delivery.endpoint_url,
            delivery.attempts,
            claimed_until,
            event.webhook_id,
            event.type,
            event.created_at,
            event.data,
        )
        for delivery, event in rows
    ]


@dataclass(frozen=True)
class AttemptOutcome:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record_attempt(
    db: AsyncSession,
    claimed: ClaimedDelivery,
    outcome: AttemptOutcome,
    *,
    now: datetime,
    max_attempts: int,
    retry_in: timedelta,
) -> DeliveryStatus | None:
    """Keep the attempt, and settle the delivery if this process's lease still holds: delivered,
    parked after `max_attempts`, or due again in `retry_in`. None when the lease was lost (another
    process took the delivery over; the attempt is kept all the same)."""
    db.add(
        OutboundDeliveryAttempt(
            delivery_id=claimed.delivery_id,
            attempted_at=outcome.attempted_at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    attempts = claimed.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "claimed_until": None}
    if outcome.delivered:
        status = DeliveryStatus.DELIVERED
        values |= {"status": status, "delivered_at": now, "last_error": None}
    elif attempts >= max_attempts:
        status = DeliveryStatus.PARKED
        values |= {"status": status, "parked_at": now, "last_error": outcome.error}
    else:
        status = DeliveryStatus.PENDING
        values |= {"next_attempt_at": now + retry_in, "last_error": outcome.error}
    settled = await db.scalar(
        update(OutboundDelivery)
        .where(
            OutboundDelivery.id == claimed.delivery_id,
            OutboundDelivery.status == DeliveryStatus.PENDING,
            OutboundDelivery.claimed_until == claimed.claimed_until,
        )
        .values(**values)
        .returning(OutboundDelivery.id)
    )
    return status if settled is not None else None


# --- operator reads and replays ------------------------------------------------------------------


def _event_filters(
    *,
    event_type: str | None,
    order_id: Any,
    payout_id: Any,
    delivery_status: DeliveryStatus | None,
) -> list[Any]:
    filters: list[Any] = []
    if event_type is not None:
        filters.append(OutboundEvent.type == event_type)
    if order_id is not None:
        filters.append(OutboundEvent.order_id == order_id)
    if payout_id is not None:
        filters.append(OutboundEvent.payout_id == payout_id)
    if delivery_status is not None:
        filters.append(
            exists().where(
                OutboundDelivery.event_id == OutboundEvent.id, OutboundDelivery.status == delivery_status
            )
        )
    return filters


async def list_events(
    db: AsyncSession,
    *,
    event_type: str | None = None,
    order_id: Any = None,
    payout_id: Any = None,
    delivery_status: DeliveryStatus | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[OutboundEvent]:
    """Newest first; `before_id` continues a page."""
    query = select(OutboundEvent).where(
        *_event_filters(
            event_type=event_type, order_id=order_id, payout_id=payout_id, delivery_status=delivery_status
        )
    )
    if before_id is not None:
        query = query.where(OutboundEvent.id < before_id)
    return list((await db.scalars(query.order_by(OutboundEvent.id.desc()).limit(limit))).all())


async def find_event(db: AsyncSession, webhook_id: str) -> OutboundEvent | None:
    return await db.scalar(select(OutboundEvent).where(OutboundEvent.webhook_id == webhook_id))


async def deliveries_of(
    db: AsyncSession, event_ids: Sequence[int]
) -> dict[int, list[tuple[OutboundDelivery, list[OutboundDeliveryAttempt]]]]:
    """Each event's deliveries, each with its attempts in the order they were made."""
    if not event_ids:
        return {}
    deliveries = list(
        (
            await db.scalars(
                select(OutboundDelivery)
                .where(OutboundDelivery.event_id.in_(event_ids))
                .order_by(OutboundDelivery.id)
            )
        ).all()
    )
    attempts: dict[int, list[OutboundDeliveryAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in await db.scalars(
            select(OutboundDeliveryAttempt)
            .where(OutboundDeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(OutboundDeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    result: dict[int, list[tuple[OutboundDelivery, list[OutboundDeliveryAttempt]]]] = {
        event_id: [] for event_id in event_ids
    }
    for delivery in deliveries:
        result[delivery.event_id].append((delivery, attempts[delivery.id]))
    return result


_REPLAYED: dict[str, Any] = {
    "status": DeliveryStatus.PENDING,
    "attempts": 0,
    "next_attempt_at": func.now(),
    "claimed_until": None,
    "parked_at": None,
    "delivered_at": None,
}


async def replay_event(db: AsyncSession, event_id: int) -> int:
    """Send an event again to every endpoint it was routed to, delivered or not, from a fresh
    attempt count; how many deliveries were reset. A delivery in flight is sent again: its lease is
    gone, so its sender's outcome no longer counts."""
    ids = await db.scalars(
        update(OutboundDelivery)
        .where(OutboundDelivery.event_id == event_id)
        .values(**_REPLAYED)
        .returning(OutboundDelivery.id)
    )
    return len(ids.all())


async def replay_parked(db: AsyncSession) -> int:
    """Every parked delivery becomes due again, from a fresh attempt count; how many."""
    ids = await db.scalars(
        update(OutboundDelivery)
        .where(OutboundDelivery.status == DeliveryStatus.PARKED)
        .values(**_REPLAYED)
        .returning(OutboundDelivery.id)
    )
    return len(ids.all())
