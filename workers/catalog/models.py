"""SQLAlchemy 2 models. Statuses are the API's: Pending, Running, Success, Failed."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Re-exported: callers import the statuses with the models.
from workers.catalog.statuses import ACTIVE_STATUSES as ACTIVE_STATUSES
from workers.catalog.statuses import FAILED as FAILED
from workers.catalog.statuses import PENDING as PENDING
from workers.catalog.statuses import RUNNING as RUNNING
from workers.catalog.statuses import SUCCESS as SUCCESS

ACTIVE_WHERE = text("status IN ('Pending', 'Running')")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


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

    @property
    def met_rto(self) -> bool:
        return self.status == "Success" and self.seconds <= self.rto_seconds


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
