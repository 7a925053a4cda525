from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped, enum_column
from app.providers.base import PaymentStatus


class PaymentSession(Timestamped, Base):
    """One attempt to pay an order at a provider; the order may have several over time.

    A row is reserved (`creating`, no provider id yet) before the provider is called, so the
    provider call runs with no transaction open; the provider's id and page are attached after.
    """

    __tablename__ = "payment_sessions"
    __table_args__ = (
        UniqueConstraint("provider", "provider_session_id"),
        Index("ix_payment_sessions_open_sync", "status", "last_synced_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    # Null while the reservation waits for the provider, and for ever if the provider refused it.
    provider_session_id: Mapped[str | None] = mapped_column(String(128))
    # Opaque token sent as `state` and echoed back on the redirect; binds a callback to this row.
    state_token: Mapped[str] = mapped_column(String(128), unique=True)
    connect_url: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    communication: Mapped[str] = mapped_column(String(140))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "payment_status"))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    transfer_state: Mapped[str | None] = mapped_column(String(64))
    provider_customer_id: Mapped[str | None] = mapped_column(String(128))
    bank_provider: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When we last asked the provider (or claimed the row to ask); drives the sweeper.
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the provider answer last applied was requested: an older answer is stale and ignored.
    snapshot_observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_error: Mapped[str | None] = mapped_column(Text)


class Refund(Timestamped, Base):
    """Money given back from a paid session: a payment of kind refund.

    Reserved (`creating`, no provider id yet) under the order's lock before the provider is called,
    so concurrent requests can never together refund more than was paid; the provider's refund id
    is attached after. Its status is a `PaymentStatus` and moves forward only.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("provider", "provider_refund_id"),
        UniqueConstraint("order_id", "idempotency_key"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        Index("ix_refunds_open_sync", "status", "last_synced_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    # The paid session the money is given back from.
    payment_session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment_sessions.id"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    # The provider's refund session id: null while the reservation waits for the provider, and
    # for ever if the provider refused it.
    provider_refund_id: Mapped[str | None] = mapped_column(String(128))
    # Opaque token sent as the refund's `state`; its notifications echo it back.
    state_token: Mapped[str] = mapped_column(String(128), unique=True)
    # The operator's Idempotency-Key, when given: a retry finds this refund, never a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(140))
    status: Mapped[PaymentStatus] = mapped_column(enum_column(PaymentStatus, "payment_status"))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    transfer_state: Mapped[str | None] = mapped_column(String(64))
    review_reason: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snapshot_observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class InboxOutcome(StrEnum):
    """How processing a stored provider event ended: `applied`, or `gave_up` after its last attempt."""

    APPLIED = "applied"
    GAVE_UP = "gave_up"


class ProviderEvent(Base):
    """The webhook inbox: every verified delivery, kept raw, deduplicated, processed once.

    A worker claims a row by setting `claimed_until` (a lease) in a short transaction, asks the
    provider with no transaction open, then applies and marks it processed; a crashed worker's
    lease simply runs out.
    """

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "delivery_id"),
        # Only the rows still to process: the claim query stays fast however many were processed.
        Index("ix_provider_events_due", "next_attempt_at", postgresql_where=text("processed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str | None] = mapped_column(String(128))
    provider_session_id: Mapped[str | None] = mapped_column(String(128), index=True)
    content_type: Mapped[str | None] = mapped_column(String(128))
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)  # exactly as received (gzip included)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[InboxOutcome | None] = mapped_column(enum_column(InboxOutcome, "inbox_outcome"))
    last_error: Mapped[str | None] = mapped_column(Text)
