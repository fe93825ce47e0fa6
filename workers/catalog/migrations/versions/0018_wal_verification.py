"""WAL verification: each WAL file's last read-back (verdict, when, why it failed)

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: not checked since it was shipped.
    with op.batch_alter_table("wal_segments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verified", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("verify_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("wal_segments", schema=None) as batch_op:
        batch_op.drop_column("verify_error")
        batch_op.drop_column("verified_at")
        batch_op.drop_column("verified")
