"""A backup and what it is made of: its artifacts, their upload parts, its hook runs;
and the scheduled backups that were skipped."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from workers.catalog.models.base import ACTIVE_WHERE, PENDING, Base, _now


class Backup(Base):
    __tablename__ = "backups"
    __table_args__ = (
        UniqueConstraint("namespace", "timestamp", name="uq_backups_namespace_timestamp"),
        # At most one Pending/Running backup per namespace, enforced by the database itself.
        Index(
            "uq_backups_one_active_per_namespace",
            "namespace",
            unique=True,
            sqlite_where=ACTIVE_WHERE,
            postgresql_where=ACTIVE_WHERE,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    timestamp: Mapped[str] = mapped_column(String(19))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    only_config: Mapped[bool] = mapped_column(default=False)
    trigger: Mapped[str] = mapped_column(String(32), default="api")
    services: Mapped[list[str]] = mapped_column(default=list)
    task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    requested_by: Mapped[str | None] = mapped_column(String(320))
    requested_customer: Mapped[str | None] = mapped_column(String(256))  # the key's customer
    error: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    # Deliveries that started work: more than 1 + TASK_MAX_REDELIVERIES means
    # the worker running it keeps being lost, and the backup is failed.
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The last verification's verdict (Success or Failed; None: never verified).
    verified: Mapped[str | None] = mapped_column(String(16))
    verified_at: Mapped[datetime | None]
    pinned: Mapped[bool] = mapped_column(default=False)  # never deleted by retention
    copied_at: Mapped[datetime | None]  # when the secondary store got its verified copy
    # SHA-256 of the manifest this fleet wrote: a restore refuses any other manifest.
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    manifest_size: Mapped[int | None] = mapped_column(BigInteger)  # its stored bytes
    # Its services whose sizes stood out from their history (monitoring/size_anomalies.py);
    # None: nothing did, or never checked. The backup stays Success all the same.
    size_anomaly: Mapped[str | None] = mapped_column(Text)
    # What went wrong without failing the backup (a `post` hook that failed), one per line.
    warning: Mapped[str | None] = mapped_column(Text)

    artifacts: Mapped[list["Artifact"]] = relationship(
        back_populates="backup", cascade="all, delete-orphan", order_by="Artifact.service"
    )
    hook_runs: Mapped[list["HookRun"]] = relationship(
        cascade="all, delete-orphan", order_by="HookRun.id"
    )


class Artifact(Base):
    """One service of one backup: one object in the store."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint(
            "backup_id", "service", "volume", name="uq_artifacts_backup_service_volume"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(63))
    volume: Mapped[int] = mapped_column(default=1)  # 1-based; large directories have several
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024))
    format: Mapped[str] = mapped_column(String(32))
    compression: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    size: Mapped[int | None] = mapped_column(BigInteger)
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    # The storage class (tier) its object is stored in: STANDARD, Hot, local… (None:
    # recorded before the column, in the store's default class).
    storage_class: Mapped[str | None] = mapped_column(String(64))
    # When retention moved it to that class (None: where it was written, since then): the
    # class's billed minimum duration counts from here (workers/operations/tiers.py).
    storage_class_since: Mapped[datetime | None]
    facts: Mapped[dict[str, Any] | None]
    encryption: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    # The multipart upload in flight, so a redelivered task can resume or abort it.
    upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)  # source bytes read so far
    # On a service's first volume: how its sizes stood out from its history (None: they did not).
    size_anomaly: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    backup: Mapped[Backup] = relationship(back_populates="artifacts")
    parts: Mapped[list["UploadPart"]] = relationship(
        cascade="all, delete-orphan", order_by="UploadPart.number"
    )


class UploadPart(Base):
    """One part of an artifact's multipart upload, recorded as soon as the store has it."""

    __tablename__ = "upload_parts"
    __table_args__ = (UniqueConstraint("artifact_id", "number", name="uq_upload_parts_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))


class HookRun(Base):
    """One run of a service's `pre` or `post` hook in a backup (workers/operations/hooks.py)."""

    __tablename__ = "hook_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(63))
    hook: Mapped[str] = mapped_column(String(8))  # "pre" or "post"
    attempt: Mapped[int] = mapped_column(default=1)  # the backup's delivery that ran it
    program: Mapped[str] = mapped_column(String(255))  # the base name of its argv[0]
    status: Mapped[str] = mapped_column(String(16))  # Success or Failed
    detail: Mapped[str] = mapped_column(Text)  # exit 0, exit 3, timed out after 600 s…
    output: Mapped[str] = mapped_column(Text, default="")  # stdout+stderr's tail, redacted
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]


class SkippedRun(Base):
    """A scheduled backup that did not run because its namespace stayed busy."""

    __tablename__ = "skipped_runs"
    __table_args__ = (Index("ix_skipped_runs_namespace_at", "namespace", "skipped_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63))
    schedule: Mapped[str] = mapped_column(String(200))
    services: Mapped[list[str]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    skipped_at: Mapped[datetime] = mapped_column(default=_now)
