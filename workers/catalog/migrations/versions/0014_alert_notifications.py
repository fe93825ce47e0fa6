"""alerts: a delivery state for the opening message, and a resolution message of its own

Revision ID: 0014
Revises: 0013

Rows from before: a delivered one is `delivered`; an undelivered one still open stays
`pending` (owed to the webhook, if one is set); an undelivered one already resolved is
`expired`, so the upgrade ends the re-sending of resolved alerts. No resolution message
is owed for what resolved before the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("delivery", sa.String(length=16), nullable=False, server_default="pending")
        )
        batch_op.add_column(sa.Column("resolve_delivery", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("resolve_delivered_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("resolve_attempts", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute("UPDATE alerts SET delivery = 'delivered' WHERE delivered_at IS NOT NULL")
    op.execute(
        "UPDATE alerts SET delivery = 'expired' "
        "WHERE delivered_at IS NULL AND resolved_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("resolve_attempts")
        batch_op.drop_column("resolve_delivered_at")
        batch_op.drop_column("resolve_delivery")
        batch_op.drop_column("delivery")
