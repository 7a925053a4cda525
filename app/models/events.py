"""The outbox of events to the merchant's systems, their deliveries and every delivery attempt.

An `outbound_events` row is written by a state writer in the same transaction as the transition it
tells of. The dispatcher gives each event one `outbound_deliveries` row per configured endpoint and
records every HTTP attempt in `outbound_delivery_attempts`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, enum_column


class DeliveryStatus(StrEnum):
    """Where a delivery stands: `pending` (to send, now or after its back-off), `delivered` (the
    endpoint answered 2xx), `parked` (given up after the last attempt; an operator can replay it)."""

    PENDING = "pending"  # to send (now, or after its back-off)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    PARKED = "parked"  # gave up after the maximum attempts; an operator can replay it


class OutboundEvent(Base):
    """One event for the merchant's systems (`order.paid`, `refund.succeeded`, `payout.paid`...).

    `id` follows commit order within a stream: a stream's writers hold its row lock (the order's or
    the payout's), so a later event of the same stream always gets a higher id.
    """

    __tablename__ = "outbound_events"
    __table_args__ = (
        # The events the dispatcher has not yet given their deliveries.
        Index("ix_outbound_events_unrouted", "id", postgresql_where=text("routed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The Standard Webhooks `webhook-id`: the same on every attempt, so receivers can deduplicate.
    webhook_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    # What the events are delivered in order of: "order:<id>" (its refunds too) or "payout:<id>".
    stream: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id", ondelete="CASCADE"))
    payout_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payouts.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the dispatcher made its deliveries (one per endpoint configured then).
    routed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboundDelivery(Base):
    """One event to one endpoint: pending until delivered, or parked after too many failures.

    A dispatcher claims a row with a lease (`claimed_until`) in a short transaction, sends with no
    transaction open, and records the outcome only if its lease still holds.
    """

    __tablename__ = "outbound_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_url"),
        # Only the rows still to send: the claim stays fast however many were delivered.
        Index(
            "ix_outbound_deliveries_pending",
            "endpoint_url",
            "stream",
            "event_id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_outbound_deliveries_parked", "id", postgresql_where=text("status = 'parked'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("outbound_events.id", ondelete="CASCADE"))
    endpoint_url: Mapped[str] = mapped_column(String(2048))
    stream: Mapped[str] = mapped_column(String(64))  # the event's, for the in-order claim
    status: Mapped[DeliveryStatus] = mapped_column(enum_column(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OutboundDeliveryAttempt(Base):
    """One HTTP request of a delivery, kept whatever its outcome."""

    __tablename__ = "outbound_delivery_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("outbound_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (refused, timed out)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
