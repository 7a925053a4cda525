"""transition note: what an operator wrote when resolving an order's review

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing and takes the lock only for an instant.
    op.add_column("order_transitions", sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("order_transitions", "note")
