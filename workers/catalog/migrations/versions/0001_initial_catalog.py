"""initial catalog

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("timestamp", sa.String(length=19), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("only_config", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=320), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "timestamp", name="uq_backups_namespace_timestamp"),
        sa.UniqueConstraint("task_id"),
    )
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.create_index(
            "uq_backups_one_active_per_namespace",
            ["namespace"],
            unique=True,
            sqlite_where=sa.text("status IN ('Pending', 'Running')"),
            postgresql_where=sa.text("status IN ('Pending', 'Running')"),
        )

    op.create_table(
        "restores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("source_namespace", sa.String(length=63), nullable=False),
        sa.Column("timestamp", sa.String(length=19), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.Column("backup_url", sa.String(length=2048), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("requested_by", sa.String(length=320), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id"),
    )
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.create_index("ix_restores_timestamp", ["timestamp"], unique=False)
        batch_op.create_index(
            "uq_restores_one_active_per_namespace",
            ["namespace"],
            unique=True,
            sqlite_where=sa.text("status IN ('Pending', 'Running')"),
            postgresql_where=sa.text("status IN ('Pending', 'Running')"),
        )

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backup_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("compression", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("source_size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["backup_id"], ["backups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("backup_id", "service", name="uq_artifacts_backup_service"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_backup_id"), ["backup_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_backup_id"))

    op.drop_table("artifacts")
    with op.batch_alter_table("restores", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_restores_one_active_per_namespace",
            sqlite_where=sa.text("status IN ('Pending', 'Running')"),
            postgresql_where=sa.text("status IN ('Pending', 'Running')"),
        )
        batch_op.drop_index("ix_restores_timestamp")

    op.drop_table("restores")
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_backups_one_active_per_namespace",
            sqlite_where=sa.text("status IN ('Pending', 'Running')"),
            postgresql_where=sa.text("status IN ('Pending', 'Running')"),
        )

    op.drop_table("backups")
