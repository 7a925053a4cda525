"""payouts: a payment of kind payout per row, reserved before the provider is called, with its own
status machine and an append-only trail of its transitions

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAYOUT_STATUSES = (
    "creating",
    "awaiting_payee",
    "account_received",
    "initiated",
    "paid",
    "failed",
    "cancelled",
    "expired",
    "needs_review",
)
PAYOUT_DELIVERIES = ("link", "email", "sms")

PAYOUT_STATUS = postgresql.ENUM(*PAYOUT_STATUSES, name="payout_status", create_type=False)
PAYOUT_DELIVERY = postgresql.ENUM(*PAYOUT_DELIVERIES, name="payout_delivery", create_type=False)
# The type created by 0002, reused as is.
TRANSITION_SOURCE = postgresql.ENUM(name="transition_source", create_type=False)


def upgrade() -> None:
    postgresql.ENUM(*PAYOUT_STATUSES, name="payout_status").create(op.get_bind())
    postgresql.ENUM(*PAYOUT_DELIVERIES, name="payout_delivery").create(op.get_bind())
    op.create_table(
        "payouts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_payout_id", sa.String(length=128), nullable=True),
        sa.Column("state_token", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("communication", sa.String(length=140), nullable=False),
        sa.Column("payee_name", sa.String(length=140), nullable=True),
        sa.Column("payee_email", sa.String(length=320), nullable=True),
        sa.Column("payee_phone", sa.String(length=20), nullable=True),
        sa.Column("delivery", PAYOUT_DELIVERY, nullable=True),
        sa.Column("payee_url", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("beneficiary_name", sa.String(length=140), nullable=True),
        sa.Column("beneficiary_iban", sa.String(length=34), nullable=True),
        sa.Column("beneficiary_bic", sa.String(length=11), nullable=True),
        sa.Column("status", PAYOUT_STATUS, nullable=False),
        sa.Column("provider_status", sa.String(length=64), nullable=True),
        sa.Column("transfer_state", sa.String(length=64), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snapshot_observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_payouts_currency_iso")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payouts_idempotency_key")),
        sa.UniqueConstraint(
            "provider", "provider_payout_id", name=op.f("uq_payouts_provider_provider_payout_id")
        ),
        sa.UniqueConstraint("state_token", name=op.f("uq_payouts_state_token")),
    )
    op.create_index("ix_payouts_created_at_id", "payouts", ["created_at", "id"])
    op.create_index("ix_payouts_open_sync", "payouts", ["status", "last_synced_at"])
    op.create_index(op.f("ix_payouts_reference"), "payouts", ["reference"])
    op.create_table(
        "payout_transitions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("payout_id", sa.Uuid(), nullable=False),
        sa.Column("from_status", PAYOUT_STATUS, nullable=True),
        sa.Column("to_status", PAYOUT_STATUS, nullable=False),
        sa.Column("source", TRANSITION_SOURCE, nullable=False),
        sa.Column("provider_status", sa.String(length=64), nullable=True),
        sa.Column("transfer_state", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["payouts.id"],
            name=op.f("fk_payout_transitions_payout_id_payouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_transitions")),
    )
    op.create_index(op.f("ix_payout_transitions_payout_id"), "payout_transitions", ["payout_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_transitions_payout_id"), table_name="payout_transitions")
    op.drop_table("payout_transitions")
    op.drop_index(op.f("ix_payouts_reference"), table_name="payouts")
    op.drop_index("ix_payouts_open_sync", table_name="payouts")
    op.drop_index("ix_payouts_created_at_id", table_name="payouts")
    op.drop_table("payouts")
    for name in ("payout_delivery", "payout_status"):
        postgresql.ENUM(name=name).drop(op.get_bind())
