"""refunds: a payment of kind refund per row, reserved before the provider is called; the
order transitions they cause name them

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The type created by 0002, reused as is.
PAYMENT_STATUS = postgresql.ENUM(name="payment_status", create_type=False)


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("payment_session_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=128), nullable=True),
        sa.Column("state_token", sa.String(length=128), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=140), nullable=True),
        sa.Column("status", PAYMENT_STATUS, nullable=False),
        sa.Column("provider_status", sa.String(length=64), nullable=True),
        sa.Column("transfer_state", sa.String(length=64), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("snapshot_observed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_refunds_currency_iso")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["payment_session_id"],
            ["payment_sessions.id"],
            name=op.f("fk_refunds_payment_session_id_payment_sessions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("order_id", "idempotency_key", name=op.f("uq_refunds_order_id_idempotency_key")),
        sa.UniqueConstraint(
            "provider", "provider_refund_id", name=op.f("uq_refunds_provider_provider_refund_id")
        ),
        sa.UniqueConstraint("state_token", name=op.f("uq_refunds_state_token")),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"])
    op.create_index(op.f("ix_refunds_payment_session_id"), "refunds", ["payment_session_id"])
    op.create_index("ix_refunds_open_sync", "refunds", ["status", "last_synced_at"])
    op.add_column("order_transitions", sa.Column("refund_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_order_transitions_refund_id_refunds"), "order_transitions", "refunds", ["refund_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_order_transitions_refund_id_refunds"), "order_transitions", type_="foreignkey"
    )
    op.drop_column("order_transitions", "refund_id")
    op.drop_index("ix_refunds_open_sync", table_name="refunds")
    op.drop_index(op.f("ix_refunds_payment_session_id"), table_name="refunds")
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")
    op.drop_table("refunds")
