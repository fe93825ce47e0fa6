"""delivery attempts per backup and restore; scheduled runs skipped because the namespace was busy

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("backups", "restores"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
            )
    op.create_table(
        "skipped_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True, unique=True),
        sa.Column("skipped_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_skipped_runs_namespace_at", "skipped_runs", ["namespace", "skipped_at"])


def downgrade() -> None:
    op.drop_index("ix_skipped_runs_namespace_at", table_name="skipped_runs")
    op.drop_table("skipped_runs")
    for table in ("restores", "backups"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("attempts")
