"""drills of pitr services to a moment (issue 21): the moment a recovery run replayed to,
the last transaction it replayed, and why a drill went to the consistent point instead

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_time", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("replayed_to", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("target_skipped", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recovery_runs", schema=None) as batch_op:
        batch_op.drop_column("target_skipped")
        batch_op.drop_column("replayed_to")
        batch_op.drop_column("target_time")
