"""upload resume, progress, volumes and encryption

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upload_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("artifact_id", "number", name="uq_upload_parts_number"),
    )
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_parts_artifact_id"), ["artifact_id"], unique=False
        )

    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("volume", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("encryption", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("upload_id", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("part_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("bytes_done", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.drop_constraint("uq_artifacts_backup_service", type_="unique")
        batch_op.create_unique_constraint(
            "uq_artifacts_backup_service_volume", ["backup_id", "service", "volume"]
        )


def downgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_constraint("uq_artifacts_backup_service_volume", type_="unique")
        batch_op.create_unique_constraint("uq_artifacts_backup_service", ["backup_id", "service"])
        batch_op.drop_column("bytes_done")
        batch_op.drop_column("part_size")
        batch_op.drop_column("upload_id")
        batch_op.drop_column("encryption")
        batch_op.drop_column("volume")

    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_parts_artifact_id"))

    op.drop_table("upload_parts")
