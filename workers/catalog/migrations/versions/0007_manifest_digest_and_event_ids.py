"""manifest digests, and user event ids that never go back on SQLite

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("manifest_sha256", sa.String(length=64), nullable=True))

    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's identity sequence never goes back
    # A plain INTEGER PRIMARY KEY reuses the highest id once it is deleted (a purge):
    # new events would sit below the shipped watermark, never shipped, later purged.
    with op.batch_alter_table(
        "user_events", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    # Start the sequence above every id ever used or shipped, whatever was purged.
    op.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'user_events', 0"
        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'user_events')"
    )
    op.execute(
        "UPDATE sqlite_sequence SET seq = MAX(COALESCE(seq, 0),"
        " (SELECT COALESCE(MAX(id), 0) FROM user_events),"
        " (SELECT COALESCE(MAX(shipped_through), 0) FROM user_event_shipping),"
        " (SELECT COALESCE(MAX(pending_through), 0) FROM user_event_shipping))"
        " WHERE name = 'user_events'"
    )


def downgrade() -> None:
    with op.batch_alter_table("backups", schema=None) as batch_op:
        batch_op.drop_column("manifest_sha256")
