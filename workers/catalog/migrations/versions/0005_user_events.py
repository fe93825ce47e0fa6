"""user events: the audit trail and how far each namespace has shipped it

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "user_events",
        sa.Column("id", EVENT_ID, autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("op_type", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("name_hints", sa.JSON(), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("customer_name", sa.String(length=256), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("request_params", sa.JSON(), nullable=False),
        sa.Column("request_payload", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_events", schema=None) as batch_op:
        batch_op.create_index("ix_user_events_namespace_id", ["namespace", "id"], unique=False)
        batch_op.create_index("ix_user_events_created_at", ["created_at"], unique=False)

    op.create_table(
        "user_event_shipping",
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("shipped_through", sa.BigInteger(), nullable=False),
        sa.Column("pending_through", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace"),
    )


def downgrade() -> None:
    op.drop_table("user_event_shipping")
    with op.batch_alter_table("user_events", schema=None) as batch_op:
        batch_op.drop_index("ix_user_events_created_at")
        batch_op.drop_index("ix_user_events_namespace_id")
    op.drop_table("user_events")
