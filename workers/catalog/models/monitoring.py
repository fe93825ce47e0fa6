"""What monitoring keeps: alerts (open until resolved, two messages at most) and when
each service was first seen (a new service's freshness counts from it)."""

from datetime import datetime

from sqlalchemy import Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from workers.catalog.models.base import Base, _now


class Alert(Base):
    """A condition that was alerted; while it stays open it is not sent again. Two messages
    at most: one when it opens, one when it resolves (a one-off event has only the first)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # At most one open alert per condition, enforced by the database itself.
        Index(
            "uq_alerts_one_open_per_condition",
            "condition",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    condition: Mapped[str] = mapped_column(String(300))  # e.g. backup.stale:app
    event: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str | None] = mapped_column(String(63))
    service: Mapped[str | None] = mapped_column(String(63))
    timestamp: Mapped[str | None] = mapped_column(String(19))
    text: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(default=_now)
    delivered_at: Mapped[datetime | None]  # None: the webhook has not taken it yet
    attempts: Mapped[int] = mapped_column(default=0)
    resolved_at: Mapped[datetime | None]
    # The opening message: pending, delivered, none (no webhook configured: recorded only),
    # skipped (resolved before it could be delivered) or expired (undelivered for a day).
    delivery: Mapped[str] = mapped_column(String(16), default="pending")
    # The resolution message, same states; None: there is none (still open, a one-off event).
    resolve_delivery: Mapped[str | None] = mapped_column(String(16))
    resolve_delivered_at: Mapped[datetime | None]
    resolve_attempts: Mapped[int] = mapped_column(default=0)


class ServiceSeen(Base):
    """When the fleet first saw each service: a service never backed up yet is judged
    fresh until its first scheduled run after this moment was due, plus a grace."""

    __tablename__ = "services_seen"

    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    first_seen_at: Mapped[datetime]
