"""storage tiers: when each artifact moved to its storage class; a restore's waiting message

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: where it was written (no move yet), so no billed minimum to wait for.
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("storage_class_since", sa.DateTime(timezone=True), nullable=True)
        )
    # NULL: the restore waits for nothing (archived objects being rehydrated, else).
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.drop_column("message")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("storage_class_since")
