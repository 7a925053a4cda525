from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped, enum_column
from app.models.orders import TransitionSource
from app.providers.base import PayoutDelivery, PayoutStatus

PAYOUT_STATUS = enum_column(PayoutStatus, "payout_status")


class Payout(Timestamped, Base):
    """Money sent from the merchant's payout account to a payee: a payment of kind payout.

    Reserved (`creating`, no provider id yet) before the provider is called, so the provider call
    runs with no transaction open; the provider's id, and the payee's page when the payee gives
    their account there, are attached after. Its status moves forward only, through the payout
    writer, and every move is a `payout_transitions` row.
    """

    __tablename__ = "payouts"
    __table_args__ = (
        UniqueConstraint("provider", "provider_payout_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        Index("ix_payouts_created_at_id", "created_at", "id"),  # the operator list's keyset order
        Index("ix_payouts_open_sync", "status", "last_synced_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(32))
    # The provider's id of the payout session: null while the reservation waits for the provider,
    # and for ever if the provider refused it.
    provider_payout_id: Mapped[str | None] = mapped_column(String(128))
    # Opaque token sent as the payout's `state`; the payee's return and notifications echo it.
    state_token: Mapped[str] = mapped_column(String(128), unique=True)
    # The operator's Idempotency-Key, when given: a retry finds this payout, never a second one.
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    # The merchant's own reference (an invoice, a seller's statement...), for finding it again.
    reference: Mapped[str] = mapped_column(String(64), index=True)
    communication: Mapped[str] = mapped_column(String(140))  # shown on the payee's statement
    payee_name: Mapped[str | None] = mapped_column(String(140))
    payee_email: Mapped[str | None] = mapped_column(String(320))
    payee_phone: Mapped[str | None] = mapped_column(String(20))
    # Set when the payee gives their account on the provider's page; null with a beneficiary.
    delivery: Mapped[PayoutDelivery | None] = mapped_column(enum_column(PayoutDelivery, "payout_delivery"))
    payee_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A beneficiary verified by the merchant (IBAN and BIC in electronic form).
    beneficiary_name: Mapped[str | None] = mapped_column(String(140))
    beneficiary_iban: Mapped[str | None] = mapped_column(String(34))
    beneficiary_bic: Mapped[str | None] = mapped_column(String(11))
    status: Mapped[PayoutStatus] = mapped_column(PAYOUT_STATUS)
    provider_status: Mapped[str | None] = mapped_column(String(64))
    transfer_state: Mapped[str | None] = mapped_column(String(64))
    review_reason: Mapped[str | None] = mapped_column(Text)
    # When we last asked the provider (or claimed the row to ask); drives the sweeper.
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the provider answer last applied was requested: an older answer is stale.
    snapshot_observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class PayoutTransition(Base):
    """Append-only audit of every payout status change and the path that made it."""

    __tablename__ = "payout_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payout_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payouts.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[PayoutStatus | None] = mapped_column(PAYOUT_STATUS)
    to_status: Mapped[PayoutStatus] = mapped_column(PAYOUT_STATUS)
    source: Mapped[TransitionSource] = mapped_column(enum_column(TransitionSource, "transition_source"))
    provider_status: Mapped[str | None] = mapped_column(String(64))
    transfer_state: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
