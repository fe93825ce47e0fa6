"""What point-in-time recovery keeps (workers/pitr/): the WAL shipped of each `pitr`
service, the gaps in it, and each streamer's latest word."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from workers.catalog.models.base import Base, _now

# WalSegment.kind: a WAL segment (complete or the growing `.partial`), or a timeline's
# history file (`<timeline>.history`, written by pg_receivewal at a timeline switch).
WAL_SEGMENT, WAL_HISTORY = "segment", "history"


class WalSegment(Base):
    """One WAL file of a `pitr` service shipped to the store (workers/pitr/): a complete
    segment, the growing one (`partial`, re-shipped as it grows: the row follows its newest
    object) or a timeline history file. LSNs are byte positions (`16/B374D848` is
    0x16B374D848); `end_lsn` is the end of the valid data shipped (a complete segment's
    end)."""

    __tablename__ = "wal_segments"
    __table_args__ = (
        UniqueConstraint(
            "namespace", "service", "timeline", "segment", name="uq_wal_segments_segment"
        ),
        Index("ix_wal_segments_service_start", "namespace", "service", "start_lsn"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    # The cluster's pg_control system identifier (a 64-bit unsigned number, as text).
    system_identifier: Mapped[str] = mapped_column(String(20))
    timeline: Mapped[int]
    segment: Mapped[str] = mapped_column(String(40))  # 24 hex digits, or `00000002.history`
    kind: Mapped[str] = mapped_column(String(16), default=WAL_SEGMENT)
    start_lsn: Mapped[int] = mapped_column(BigInteger)
    end_lsn: Mapped[int] = mapped_column(BigInteger)
    partial: Mapped[bool] = mapped_column(default=False)
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)  # stored bytes
    source_size: Mapped[int] = mapped_column(BigInteger)  # the file's bytes
    sha256: Mapped[str] = mapped_column(String(64))  # of the stored bytes
    encryption: Mapped[dict[str, Any] | None]
    shipped_at: Mapped[datetime] = mapped_column(default=_now)
    # The last read-back of its object (workers/operations/wal_verify.py): Success or
    # Failed, when, and why it failed (redacted); None: not checked since it was shipped
    # (shipping the file again clears them: the object is another).
    verified: Mapped[str | None] = mapped_column(String(16))
    verified_at: Mapped[datetime | None]
    verify_error: Mapped[str | None] = mapped_column(Text)


class WalGap(Base):
    """WAL of a `pitr` service that is not in the store and never will be (the slot was
    dropped or invalidated, the server removed the WAL): restores to a moment cannot cross
    it, so the recoverable window restarts at the next base backup after it."""

    __tablename__ = "wal_gaps"
    __table_args__ = (Index("ix_wal_gaps_service", "namespace", "service", "detected_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    system_identifier: Mapped[str | None] = mapped_column(String(20))
    # What was shipped up to (None: nothing known) and where shipping resumed (None: not
    # yet); equal when the stream went on but its WAL was unprotected for a while.
    start_lsn: Mapped[int | None] = mapped_column(BigInteger)
    end_lsn: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(default=_now)


class WalStream(Base):
    """The latest word of the streamer of one `pitr` service (rewritten every
    WAL_SHIP_INTERVAL while it streams): what the server and its slot said, what was
    shipped. `backfleet wal status`, /metrics and the wal.lag / wal.retained alerts read it."""

    __tablename__ = "wal_streams"

    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), primary_key=True)
    slot: Mapped[str] = mapped_column(String(63))
    holder: Mapped[str | None] = mapped_column(String(255))  # `host pid N`; None: stopped
    system_identifier: Mapped[str | None] = mapped_column(String(20))
    timeline: Mapped[int | None]
    server_lsn: Mapped[int | None] = mapped_column(BigInteger)  # pg_current_wal_lsn()
    shipped_lsn: Mapped[int | None] = mapped_column(BigInteger)  # end of valid data shipped
    shipped_at: Mapped[datetime | None]
    # The last moment everything the server had written was shipped: lag counts from it.
    caught_up_at: Mapped[datetime | None]
    retained_bytes: Mapped[int | None] = mapped_column(BigInteger)  # the slot holds on the server
    wal_status: Mapped[str | None] = mapped_column(String(16))  # the slot's; `dropped`
    error: Mapped[str | None] = mapped_column(Text)  # redacted
    updated_at: Mapped[datetime] = mapped_column(default=_now)
