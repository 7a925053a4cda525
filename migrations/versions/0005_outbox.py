"""outbox: events for the merchant's systems, written with the transitions they tell of, their
deliveries (one per endpoint) and every delivery attempt

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("refund_id", sa.Uuid(), nullable=True),
        sa.Column("payout_id", sa.Uuid(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_outbound_events_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["payout_id"],
            ["payouts.id"],
            name=op.f("fk_outbound_events_payout_id_payouts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"],
            ["refunds.id"],
            name=op.f("fk_outbound_events_refund_id_refunds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_events")),
        sa.UniqueConstraint("webhook_id", name=op.f("uq_outbound_events_webhook_id")),
    )
    op.create_index(op.f("ix_outbound_events_order_id"), "outbound_events", ["order_id"], unique=False)
    op.create_index(op.f("ix_outbound_events_payout_id"), "outbound_events", ["payout_id"], unique=False)
    op.create_index(op.f("ix_outbound_events_type"), "outbound_events", ["type"], unique=False)
    op.create_index(
        "ix_outbound_events_unrouted",
        "outbound_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("routed_at IS NULL"),
    )
    op.create_table(
        "outbound_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column(
            "status", sa.Enum("pending", "delivered", "parked", name="delivery_status"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbound_events.id"],
            name=op.f("fk_outbound_deliveries_event_id_outbound_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_deliveries")),
        sa.UniqueConstraint(
            "event_id", "endpoint_url", name=op.f("uq_outbound_deliveries_event_id_endpoint_url")
        ),
    )
    op.create_index(
        "ix_outbound_deliveries_parked",
        "outbound_deliveries",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'parked'"),
    )
    op.create_index(
        "ix_outbound_deliveries_pending",
        "outbound_deliveries",
        ["endpoint_url", "stream", "event_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "outbound_delivery_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["outbound_deliveries.id"],
            name=op.f("fk_outbound_delivery_attempts_delivery_id_outbound_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_delivery_attempts")),
    )
    op.create_index(
        op.f("ix_outbound_delivery_attempts_delivery_id"),
        "outbound_delivery_attempts",
        ["delivery_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbound_delivery_attempts_delivery_id"), table_name="outbound_delivery_attempts")
    op.drop_table("outbound_delivery_attempts")
    op.drop_index(
        "ix_outbound_deliveries_pending",
        table_name="outbound_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_index(
        "ix_outbound_deliveries_parked",
        table_name="outbound_deliveries",
        postgresql_where=sa.text("status = 'parked'"),
    )
    op.drop_table("outbound_deliveries")
    op.drop_index(
        "ix_outbound_events_unrouted",
        table_name="outbound_events",
        postgresql_where=sa.text("routed_at IS NULL"),
    )
    op.drop_index(op.f("ix_outbound_events_type"), table_name="outbound_events")
    op.drop_index(op.f("ix_outbound_events_payout_id"), table_name="outbound_events")
    op.drop_index(op.f("ix_outbound_events_order_id"), table_name="outbound_events")
    op.drop_table("outbound_events")
    postgresql.ENUM(name="delivery_status").drop(op.get_bind())
