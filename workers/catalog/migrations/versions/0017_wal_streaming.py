"""WAL streaming (issue 21): shipped WAL files, gaps, each streamer's latest word

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wal_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("system_identifier", sa.String(length=20), nullable=False),
        sa.Column("timeline", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("start_lsn", sa.BigInteger(), nullable=False),
        sa.Column("end_lsn", sa.BigInteger(), nullable=False),
        sa.Column("partial", sa.Boolean(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("encryption", sa.JSON(), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "namespace", "service", "timeline", "segment", name="uq_wal_segments_segment"
        ),
    )
    with op.batch_alter_table("wal_segments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wal_segments_service_start", ["namespace", "service", "start_lsn"], unique=False
        )
    op.create_table(
        "wal_gaps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("system_identifier", sa.String(length=20), nullable=True),
        sa.Column("start_lsn", sa.BigInteger(), nullable=True),
        sa.Column("end_lsn", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("wal_gaps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wal_gaps_service", ["namespace", "service", "detected_at"], unique=False
        )
    op.create_table(
        "wal_streams",
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("service", sa.String(length=63), nullable=False),
        sa.Column("slot", sa.String(length=63), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("system_identifier", sa.String(length=20), nullable=True),
        sa.Column("timeline", sa.Integer(), nullable=True),
        sa.Column("server_lsn", sa.BigInteger(), nullable=True),
        sa.Column("shipped_lsn", sa.BigInteger(), nullable=True),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("caught_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retained_bytes", sa.BigInteger(), nullable=True),
        sa.Column("wal_status", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "service"),
    )


def downgrade() -> None:
    op.drop_table("wal_streams")
    op.drop_table("wal_gaps")
    op.drop_table("wal_segments")
