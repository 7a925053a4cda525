"""Operator work on events: read outbound events and their deliveries, replay them, and replay
stored provider events through the inbox."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import ApiError, NotFound
from app.events import repository
from app.events.schemas import InboundReplayRequest, OutboundEventOut
from app.models import DeliveryStatus
from app.payments import repository as payments_repository


def encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"evt|{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition("|")
        if prefix != "evt" or not value.isdigit():
            raise ValueError(raw)
        return int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ApiError(
            422,
            "invalid_cursor",
            "cursor is not one this API returned; start again without it",
            [{"field": "query.cursor", "message": "not a valid cursor", "type": "invalid_cursor"}],
        ) from None


@dataclass(frozen=True)
class EventPage:
    items: list[OutboundEventOut]
    next_cursor: str | None


async def list_events(
    db: AsyncSession,
    *,
    event_type: str | None,
    order_id: uuid.UUID | None,
    payout_id: uuid.UUID | None,
    delivery_status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
) -> EventPage:
    events = await repository.list_events(
        db,
        event_type=event_type,
        order_id=order_id,
        payout_id=payout_id,
        delivery_status=delivery_status,
        before_id=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    more = len(events) > limit
    events = events[:limit]
    deliveries = await repository.deliveries_of(db, [e.id for e in events])
    return EventPage(
        items=[OutboundEventOut.of(e, deliveries[e.id]) for e in events],
        next_cursor=encode_cursor(events[-1].id) if more else None,
    )


async def read_event(db: AsyncSession, webhook_id: str) -> OutboundEventOut:
    event = await repository.find_event(db, webhook_id)
    if event is None:
        raise NotFound("event")
    deliveries = await repository.deliveries_of(db, [event.id])
    return OutboundEventOut.of(event, deliveries[event.id])


async def replay_event(db: AsyncSession, webhook_id: str) -> int:
    event = await repository.find_event(db, webhook_id)
    if event is None:
        raise NotFound("event")
    if event.routed_at is None:
        raise ApiError(409, "event_not_routed", "this event has not been sent yet; it will be shortly")
    return await repository.replay_event(db, event.id)


async def replay_parked(db: AsyncSession) -> int:
    return await repository.replay_parked(db)


async def replay_inbound(db: AsyncSession, criteria: InboundReplayRequest) -> list[int]:
    """Make the matching stored provider events due again; the inbox worker re-reads their payments
    from the provider and the writer applies whatever is new (nothing twice)."""
    return await payments_repository.reset_events_for_replay(
        db,
        now=datetime.now(UTC),
        event_ids=criteria.event_ids,
        provider=criteria.provider,
        received_from=criteria.received_from,
        received_to=criteria.received_to,
        outcome=criteria.outcome,
    )
