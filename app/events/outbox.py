"""Recording outbound events: called by the state writers, inside the transaction of the transition.

`app/payments/writer.py` records `order.<status>` for every move of an order and
`refund.<status>` for every move of a refund; `app/payouts/writer.py` records `payout.<status>`
for every move of a payout. The row is added to the writer's own session, or written by the
same statement as the move (a payment session's attachment, `order_event`), so it is committed
with the transition or rolled back with it: never one without the other.

An event's `data` is what the merchant's systems need to act without calling back: ids, the new
and previous status, the money in minor units, the reason a person must look, and who moved it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Order, OutboundEvent, Payout, Refund, TransitionSource

# The version of the payload's shape; bumped when a field changes meaning or goes away.
PAYLOAD_VERSION = 1


def new_webhook_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def _record(
    db: AsyncSession,
    event_type: str,
    *,
    stream: str,
    data: dict[str, Any],
    order_id: uuid.UUID | None = None,
    refund_id: uuid.UUID | None = None,
    payout_id: uuid.UUID | None = None,
    webhook_id: str | None = None,
) -> OutboundEvent:
    event = OutboundEvent(
        webhook_id=webhook_id or new_webhook_id(),
        type=event_type,
        stream=stream,
        order_id=order_id,
        refund_id=refund_id,
        payout_id=payout_id,
        data=data,
    )
    db.add(event)
    return event


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An outbound event's row before it is written: by the ORM (`_record`) or by a writer's own
    statement (opening a payment session)."""

    webhook_id: str
    type: str
    stream: str
    data: dict[str, Any]


def order_event(
    order_id: uuid.UUID,
    *,
    reference: str,
    status: str,
    previous: str,
    amount: int,
    currency: str,
    source: TransitionSource,
    payment_session_id: uuid.UUID | None,
    refund_id: uuid.UUID | None,
    reason: str | None,
) -> NewEvent:
    """`order.<status>`: the order has just moved from `previous` to `status`."""
    return NewEvent(
        webhook_id=new_webhook_id(),
        type=f"order.{status}",
        stream=f"order:{order_id}",
        data={
            "order_id": str(order_id),
            "reference": reference,
            "status": str(status),
            "previous_status": previous,
            "amount": amount,
            "currency": currency,
            "payment_session_id": str(payment_session_id) if payment_session_id else None,
            "refund_id": str(refund_id) if refund_id else None,
            "reason": reason,
            "source": str(source),
        },
    )


def order_moved(
    db: AsyncSession,
    order: Order,
    previous: str,
    *,
    source: TransitionSource,
    payment_session_id: uuid.UUID | None,
    refund_id: uuid.UUID | None,
    reason: str | None,
) -> OutboundEvent:
    """`order.<status>`: the order has just moved from `previous` to `order.status`."""
    event = order_event(
        order.id,
        reference=order.reference,
        status=order.status,
        previous=previous,
        amount=order.total_amount,
        currency=order.currency,
        source=source,
        payment_session_id=payment_session_id,
        refund_id=refund_id,
        reason=reason,
    )
    return _record(
        db,
        event.type,
        stream=event.stream,
        data=event.data,
        order_id=order.id,
        refund_id=refund_id,
        webhook_id=event.webhook_id,
    )


def refund_moved(db: AsyncSession, refund: Refund, previous: str) -> OutboundEvent:
    """`refund.<status>`: a refund has just moved from `previous` to `refund.status`. Its events
    share the order's stream, so an order's refund and order events arrive in the order they
    happened."""
    return _record(
        db,
        f"refund.{refund.status}",
        stream=f"order:{refund.order_id}",
        order_id=refund.order_id,
        refund_id=refund.id,
        data={
            "refund_id": str(refund.id),
            "order_id": str(refund.order_id),
            "status": str(refund.status),
            "previous_status": previous,
            "amount": refund.amount,
            "currency": refund.currency,
            "reason": refund.reason,
            "review_reason": refund.review_reason,
        },
    )


def payout_moved(
    db: AsyncSession, payout: Payout, previous: str, *, source: TransitionSource, reason: str | None
) -> OutboundEvent:
    """`payout.<status>`: a payout has just moved from `previous` to `payout.status`."""
    return _record(
        db,
        f"payout.{payout.status}",
        stream=f"payout:{payout.id}",
        payout_id=payout.id,
        data={
            "payout_id": str(payout.id),
            "reference": payout.reference,
            "status": str(payout.status),
            "previous_status": previous,
            "amount": payout.amount,
            "currency": payout.currency,
            "reason": reason,
            "source": str(source),
        },
    )
