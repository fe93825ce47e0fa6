"""The audit trail's tables: user events and how far each namespace's are shipped."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from workers.catalog.models.base import Base, _now

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class UserEvent(Base):
    """One user action (or one of Backfleet's own operations): a line of the audit trail.

    Columns are the line format's keys (DESIGN.md); `id` orders shipping and
    names the shipped objects, `namespace` picks the `<namespace>/user-events-audit/` prefix.
    """

    __tablename__ = "user_events"
    __table_args__ = (
        Index("ix_user_events_namespace_id", "namespace", "id"),  # shipping: id > watermark
        Index("ix_user_events_created_at", "created_at"),  # purging: older than retention
        # Ids never go back: a reused id would sit below the shipped watermark and be lost.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(63))
    op_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)  # epoch milliseconds, UTC
    name_hints: Mapped[list[str]] = mapped_column(default=list)
    user_email: Mapped[str] = mapped_column(String(320), default="")
    customer_name: Mapped[str] = mapped_column(String(256), default="")
    response_code: Mapped[int] = mapped_column(default=200)
    request_params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    request_payload: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class UserEventShipping(Base):
    """How far each namespace's events are shipped.

    `shipped_through`: every event of the namespace with an id up to it is in the
    store, confirmed. `pending_through`: the batch being shipped, fixed before its
    upload so a flush that died is redone with exactly the same events (and bytes).
    """

    __tablename__ = "user_event_shipping"

    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    shipped_through: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_through: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)
