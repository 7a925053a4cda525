"""Operator endpoints for events: outbound events with their deliveries and replays, and the replay
of stored provider events through the inbox."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from app.auth import require_admin
from app.deps import DbSession, DispatcherDep, WorkersDep
from app.events import service
from app.events.schemas import (
    InboundReplayOut,
    InboundReplayRequest,
    OutboundEventOut,
    OutboundEventPage,
    ReplayOut,
)
from app.models import DeliveryStatus
from app.openapi import error

router = APIRouter(tags=["events"], dependencies=[Depends(require_admin)])

_ONE: dict[int | str, dict[str, Any]] = {404: error("No such event", "not_found")}
EventId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_]+$",
        description="The event's `webhook-id` (`evt_...`)",
    ),
]


@router.get(
    "/events/outbound",
    response_model=OutboundEventPage,
    summary="Operator: outbound events and their deliveries, newest first",
    description=(
        "The events sent to the merchant's systems (MERCHANT_WEBHOOK_URLS), each with its deliveries "
        "and every attempt. Filter by `type`, `order_id`, `payout_id` or `delivery_status`; page with "
        "`limit` and `cursor`."
    ),
    responses={422: error("An invalid filter or cursor", "validation_error", "invalid_cursor")},
)
async def list_outbound_events(
    db: DbSession,
    type: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[a-z_]+\.[a-z_]+$",
            description="e.g. `order.paid`, `payout.failed`",
        ),
    ] = None,
    order_id: Annotated[uuid.UUID | None, Query(description="Events of this order (its refunds too)")] = None,
    payout_id: Annotated[uuid.UUID | None, Query(description="Events of this payout")] = None,
    delivery_status: Annotated[
        DeliveryStatus | None, Query(description="Events with at least one delivery in this status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
) -> OutboundEventPage:
    page = await service.list_events(
        db,
        event_type=type,
        order_id=order_id,
        payout_id=payout_id,
        delivery_status=delivery_status,
        limit=limit,
        cursor=cursor,
    )
    return OutboundEventPage(items=page.items, next_cursor=page.next_cursor)


@router.get(
    "/events/outbound/{event_id}",
    response_model=OutboundEventOut,
    summary="Operator: an outbound event, its deliveries and every attempt",
    description="One event by its `webhook-id` (`evt_...`), with each delivery and every HTTP attempt.",
    responses=_ONE,
)
async def get_outbound_event(event_id: EventId, db: DbSession) -> OutboundEventOut:
    return await service.read_event(db, event_id)


@router.post(
    "/events/outbound/replay-parked",
    response_model=ReplayOut,
    summary="Operator: send every parked delivery again",
    description="Each parked delivery is due again with a fresh attempt count, in its stream's order.",
)
async def replay_parked(db: DbSession, dispatcher: DispatcherDep) -> ReplayOut:
    replayed = await service.replay_parked(db)
    await db.commit()
    dispatcher.wake()
    return ReplayOut(replayed=replayed)


@router.post(
    "/events/outbound/{event_id}/replay",
    response_model=ReplayOut,
    summary="Operator: send an outbound event again",
    description=(
        "Every delivery of the event, delivered or parked, is due again with a fresh attempt count "
        "and the same `webhook-id`, so a receiver that already has it can tell."
    ),
    responses={**_ONE, 409: error("`event_not_routed`: the event has not been sent yet", "event_not_routed")},
)
async def replay_outbound_event(event_id: EventId, db: DbSession, dispatcher: DispatcherDep) -> ReplayOut:
    replayed = await service.replay_event(db, event_id)
    await db.commit()
    dispatcher.wake()
    return ReplayOut(replayed=replayed)


@router.post(
    "/events/inbound/replay",
    response_model=InboundReplayOut,
    summary="Operator: process stored provider webhooks again",
    description=(
        "The matching provider events become due again: the inbox worker reads their payments from "
        "the provider once more, and the writer applies only what is new (nothing twice). Useful "
        "after a fix, or for events that were given up. Events being processed right now are left "
        "alone."
    ),
    responses={422: error("No criterion, or an invalid one", "validation_error")},
)
async def replay_inbound_events(
    body: InboundReplayRequest, db: DbSession, workers: WorkersDep
) -> InboundReplayOut:
    ids = await service.replay_inbound(db, body)
    await db.commit()
    workers.notify()
    return InboundReplayOut(replayed=len(ids), event_ids=ids)
