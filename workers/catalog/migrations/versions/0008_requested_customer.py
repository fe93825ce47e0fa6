"""the requester's customer on backups and restores (their audit events' customerName)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("backups", "restores"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("requested_customer", sa.String(256), nullable=True))


def downgrade() -> None:
    for table in ("backups", "restores"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("requested_customer")
