"""recovery-time evidence: each drill into scratch and each user restore, per service

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recovery_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("backup_id", sa.Integer(), nullable=True),
        sa.Column("source_namespace", sa.String(length=63), nullable=False),
        sa.Column("timestamp", sa.String(length=19), nullable=False),
        sa.Column("restore_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("rto_seconds", sa.Integer(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("counts_expected", sa.JSON(), nullable=True),
        sa.Column("counts_found", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["backup_id"], ["backups.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["restore_id"], ["restores.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recovery_runs", schema=None) as batch_op:
        batch_op.create_index("ix_recovery_runs_backup_id", ["backup_id"], unique=False)
        batch_op.create_index("ix_recovery_runs_restore_id", ["restore_id"], unique=False)
        batch_op.create_index(
            "ix_recovery_runs_service",
            ["namespace", "service", "trigger", "finished_at"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("recovery_runs")
