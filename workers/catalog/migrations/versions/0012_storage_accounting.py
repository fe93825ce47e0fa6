"""storage accounting: each artifact's storage class (tier), each manifest's stored bytes

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: written before this column, in the store's default class (read as such).
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_class", sa.String(length=64), nullable=True))
    # NULL: written before this column (a few KiB, not counted).
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manifest_size", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("manifest_size")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("storage_class")
