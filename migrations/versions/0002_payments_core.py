"""payments core: typed status enums, payment status apart from order status, session
reservations, inbox leases, raw deliveries kept as bytes

Stop every process of the previous release before upgrading: they write order-vocabulary statuses
into `payment_sessions.status`, which this revision turns into the `payment_status` enum.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDER_STATUSES = (
    "pending", "awaiting_payment", "processing", "paid", "failed", "cancelled", "expired",
    "partially_refunded", "refunded", "needs_review",
)
PAYMENT_STATUSES = (
    "creating", "open", "processing", "succeeded", "failed", "cancelled", "expired", "needs_review",
)
SOURCES = ("api", "callback", "webhook", "poll", "operator")
OUTCOMES = ("applied", "gave_up")

# Sessions used the order vocabulary; each value's payment status.
SESSION_STATUS_MAP = {
    "awaiting_payment": "open",
    "pending": "open",
    "processing": "processing",
    "paid": "succeeded",
    "partially_refunded": "succeeded",
    "refunded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
    "needs_review": "needs_review",
}


def upgrade() -> None:
    postgresql.ENUM(*ORDER_STATUSES, name="order_status").create(op.get_bind())
    postgresql.ENUM(*PAYMENT_STATUSES, name="payment_status").create(op.get_bind())
    postgresql.ENUM(*SOURCES, name="transition_source").create(op.get_bind())
    postgresql.ENUM(*OUTCOMES, name="inbox_outcome").create(op.get_bind())

    op.execute("ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::order_status")
    op.execute(
        "ALTER TABLE order_transitions "
        "ALTER COLUMN from_status TYPE order_status USING from_status::order_status, "
        "ALTER COLUMN to_status TYPE order_status USING to_status::order_status, "
        "ALTER COLUMN source TYPE transition_source USING "
        "(CASE source WHEN 'sweeper' THEN 'poll' ELSE source END)::transition_source"
    )
    # No ELSE: a value outside the old vocabulary becomes NULL and the NOT NULL column stops the
    # migration, rather than being rewritten silently.
    cases = " ".join(f"WHEN '{old}' THEN '{new}'" for old, new in SESSION_STATUS_MAP.items())
    op.execute(
        "ALTER TABLE payment_sessions ALTER COLUMN status TYPE payment_status USING "
        f"(CASE status {cases} END)::payment_status"
    )
    op.alter_column("payment_sessions", "provider_session_id", existing_type=sa.String(128), nullable=True)
    op.alter_column("payment_sessions", "connect_url", existing_type=sa.Text(), nullable=True)

    # `ignored` was never written by any release; mapped for safety all the same.
    op.execute("UPDATE provider_events SET outcome = 'applied' WHERE outcome = 'ignored'")
    op.execute(
        "ALTER TABLE provider_events ALTER COLUMN outcome TYPE inbox_outcome USING outcome::inbox_outcome"
    )
    # Deliveries are kept byte for byte (a gzip body is not text).
    op.execute(
        "ALTER TABLE provider_events ALTER COLUMN raw_body TYPE bytea USING convert_to(raw_body, 'UTF8')"
    )
    op.add_column("provider_events", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("ix_provider_events_pending", table_name="provider_events")
    op.create_index(
        "ix_provider_events_due",
        "provider_events",
        ["next_attempt_at"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_provider_events_due", table_name="provider_events")
    op.create_index("ix_provider_events_pending", "provider_events", ["processed_at", "next_attempt_at"])
    op.drop_column("provider_events", "claimed_until")
    op.execute(
        "ALTER TABLE provider_events ALTER COLUMN raw_body TYPE text "
        "USING convert_from(raw_body, 'UTF8')"
    )
    op.execute("ALTER TABLE provider_events ALTER COLUMN outcome TYPE varchar(16) USING outcome::text")
    op.execute("DELETE FROM payment_sessions WHERE provider_session_id IS NULL")
    op.alter_column("payment_sessions", "connect_url", existing_type=sa.Text(), nullable=False)
    op.alter_column("payment_sessions", "provider_session_id", existing_type=sa.String(128), nullable=False)
    back = {"open": "awaiting_payment", "processing": "processing", "succeeded": "paid", "failed": "failed",
            "cancelled": "cancelled", "expired": "expired", "needs_review": "needs_review"}
    cases = " ".join(f"WHEN '{new}' THEN '{old}'" for new, old in back.items())
    op.execute(
        f"ALTER TABLE payment_sessions ALTER COLUMN status TYPE varchar(32) USING (CASE status::text {cases} END)"
    )
    op.execute(
        "ALTER TABLE order_transitions "
        "ALTER COLUMN from_status TYPE varchar(32) USING from_status::text, "
        "ALTER COLUMN to_status TYPE varchar(32) USING to_status::text, "
        "ALTER COLUMN source TYPE varchar(16) USING source::text"
    )
    op.execute("ALTER TABLE orders ALTER COLUMN status TYPE varchar(32) USING status::text")
    for name in ("inbox_outcome", "transition_source", "payment_status", "order_status"):
        postgresql.ENUM(name=name).drop(op.get_bind())
