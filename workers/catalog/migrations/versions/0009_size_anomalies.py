"""size anomalies: what was unusual about a backup's sizes, on the backup and its artifacts

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("backups", "artifacts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("size_anomaly", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("backups", "artifacts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("size_anomaly")
