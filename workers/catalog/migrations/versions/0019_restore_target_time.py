"""restore to a moment (issue 21): the target time a restore's base backups recover to

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target_time", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.drop_column("target_time")
