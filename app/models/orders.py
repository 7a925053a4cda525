from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Timestamped, enum_column
from app.orders.states import OrderStatus


class TransitionSource(StrEnum):
    """Who moved an order: the path that reached the payments writer."""

    API = "api"  # the storefront: order created, payment session opened
    CALLBACK = "callback"  # the payer's return
    WEBHOOK = "webhook"  # the inbox worker, after a provider notification
    POLL = "poll"  # the sweeper
    OPERATOR = "operator"  # an operator: "sync now", a refund, a review resolved


ORDER_STATUS = enum_column(OrderStatus, "order_status")


class Order(Timestamped, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("total_amount > 0", name="total_amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        Index("ix_orders_created_at_id", "created_at", "id"),  # the operator list's keyset order
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[OrderStatus] = mapped_column(ORDER_STATUS, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(40))
    customer_company: Mapped[str | None] = mapped_column(String(200))
    customer_address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # sha256 of the access token handed to the storefront once; the token itself is never stored.
    access_token_hash: Mapped[str] = mapped_column(String(64))
    review_reason: Mapped[str | None] = mapped_column(Text)

    # Loaded explicitly where needed (selectinload); a lazy load is a bug.
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.position", lazy="raise", cascade="all, delete-orphan"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    name: Mapped[str] = mapped_column(String(200))
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    line_amount: Mapped[int] = mapped_column(BigInteger)

    order: Mapped[Order] = relationship(back_populates="lines", lazy="raise")


class OrderTransition(Base):
    """Append-only audit of every order state change and where it came from."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    payment_session_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_sessions.id"))
    # Set when a refund moved the order.
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    from_status: Mapped[OrderStatus | None] = mapped_column(ORDER_STATUS)
    to_status: Mapped[OrderStatus] = mapped_column(ORDER_STATUS)
    source: Mapped[TransitionSource] = mapped_column(enum_column(TransitionSource, "transition_source"))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    transfer_state: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    # What the operator wrote when resolving a review.
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """A client's Idempotency-Key, the request it came with, and the response it got."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
