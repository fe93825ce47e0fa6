"""Restores, and each service's recovery runs (drills and user restores, timed): the
recovery-time evidence."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from workers.catalog.models.base import ACTIVE_WHERE, PENDING, Base, _now


class Restore(Base):
    __tablename__ = "restores"
    __table_args__ = (
        Index(
            "uq_restores_one_active_per_namespace",
            "namespace",
            unique=True,
            sqlite_where=ACTIVE_WHERE,
            postgresql_where=ACTIVE_WHERE,
        ),
        Index("ix_restores_timestamp", "timestamp"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))  # the namespace restored into
    source_namespace: Mapped[str] = mapped_column(String(63))  # where the backup lives
    timestamp: Mapped[str] = mapped_column(String(19))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    services: Mapped[list[str]] = mapped_column(default=list)
    skipped: Mapped[list[str]] = mapped_column(default=list)
    backup_url: Mapped[str] = mapped_column(String(2048))
    # A restore to a moment (pitr services): what their base backups (of `timestamp`) are
    # recovered to, by replaying the streamed WAL; None: to the backup itself.
    target_time: Mapped[datetime | None]
    # Stored bytes read back so far, of all the artifacts to restore: progress and ETA.
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    # What it waits for while it cannot read yet (archived objects being rehydrated); None:
    # nothing. `backfleet restore --wait` shows it beside the progress bar.
    message: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(320))
    requested_customer: Mapped[str | None] = mapped_column(String(256))  # the key's customer
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


DRILL, USER_RESTORE = "drill", "restore"  # RecoveryRun.trigger


class RecoveryRun(Base):
    """One service restored from one backup, and how long it took: a drill into scratch
    (workers/operations/restore_test.py) or a user's restore into the live target
    (workers/operations/restore.py). The recovery-time evidence: each is judged by the
    service's RTO in force when it ran (`rto_seconds`)."""

    __tablename__ = "recovery_runs"
    __table_args__ = (
        Index("ix_recovery_runs_service", "namespace", "service", "trigger", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))  # the service's (restored into)
    service: Mapped[str] = mapped_column(String(63))
    trigger: Mapped[str] = mapped_column(String(16))  # DRILL or USER_RESTORE
    kind: Mapped[str] = mapped_column(String(32))  # the service's source kind
    # The backup restored (its namespace is the restore's source namespace); the row stays
    # when retention deletes the backup, its timestamp naming it.
    backup_id: Mapped[int | None] = mapped_column(
        ForeignKey("backups.id", ondelete="SET NULL"), index=True
    )
    source_namespace: Mapped[str] = mapped_column(String(63))
    timestamp: Mapped[str] = mapped_column(String(19))
    restore_id: Mapped[int | None] = mapped_column(
        ForeignKey("restores.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))  # Success or Failed
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    seconds: Mapped[float] = mapped_column(Float)  # measured on a monotonic clock
    rto_seconds: Mapped[int]
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)  # stored bytes restored
    # What the manifest recorded at backup time, and what the scratch held (name -> count:
    # rows per table, or files and bytes); None: nothing recorded or nothing counted.
    counts_expected: Mapped[dict[str, Any] | None]
    counts_found: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)  # redacted
    # A base backup of a `pitr` service recovered to a moment (a drill's random one, or a
    # user's targetTime): that moment; None: to its consistent point (or not a base backup).
    target_time: Mapped[datetime | None]
    # The last transaction that recovery replayed (at or before target_time), as the scratch
    # server said it (pitr/replay.py); None: none replayed, or not recorded.
    replayed_to: Mapped[datetime | None]
    # Why a drill of a pitr service's base backup went to its consistent point, not to a
    # moment (no recoverable window, the WAL does not continue from that backup).
    target_skipped: Mapped[str | None] = mapped_column(Text)

    @property
    def met_rto(self) -> bool:
        return self.status == "Success" and self.seconds <= self.rto_seconds
