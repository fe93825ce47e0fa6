"""Verifications: each read-back or test restore of a backup, in either store."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from workers.catalog.models.base import Base, _now


class Verification(Base):
    """One check of one backup: a read-back of every artifact, or a test restore."""

    __tablename__ = "verifications"
    __table_args__ = (Index("ix_verifications_namespace_checked", "namespace", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[int | None] = mapped_column(
        ForeignKey("backups.id", ondelete="SET NULL"), index=True
    )
    namespace: Mapped[str] = mapped_column(String(63))
    timestamp: Mapped[str] = mapped_column(String(19))
    # "read" (every byte read back), "metadata" (archived objects judged by what the store
    # says of them, unread: operations/verify.py) or "restore" (a test restore)
    kind: Mapped[str] = mapped_column(String(16))
    store: Mapped[str] = mapped_column(String(16), default="primary")  # or "secondary"
    status: Mapped[str] = mapped_column(String(16))  # Success or Failed
    artifacts: Mapped[int] = mapped_column(default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    checked_at: Mapped[datetime] = mapped_column(default=_now)  # when it finished
    # When the pass that took it started: the cadence compares starts with starts, so a
    # long read does not put the next one off. None: recorded before migration 0014, or
    # a test restore (checked_at stands in).
    started_at: Mapped[datetime | None]
