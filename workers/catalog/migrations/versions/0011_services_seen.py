"""when the fleet first saw each service (a fresh install's freshness counts from it)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "services_seen",
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "service"),
    )


def downgrade() -> None:
    op.drop_table("services_seen")
