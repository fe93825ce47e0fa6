"""`GET /backups`: a page of backup summaries, newest first."""

from datetime import datetime

from pydantic import Field

from api.schemas.responses import BackupStatus, ResponseModel
from workers.catalog.listing import ListedBackup


class BackupSummary(BackupStatus):
    """One backup of `GET /backups`: BackupStatus plus what the detail says of the backup
    as a whole (its fields keep the detail's names), its artifacts' stored and source
    bytes, when it was asked for, and its duration."""

    services: list[str] = Field(description="The services it holds, or is to hold")
    only_config: bool = Field(description="Only the configuration services (`onlyConfig`)")
    trigger: str = Field(description="What asked for it: `api`, `schedule`, `cli`…")
    error: str | None = Field(description="Why it failed; null: it did not")
    warning: str | None = Field(
        description="What went wrong without failing it (a `post` hook that failed)"
    )
    size: int | None = Field(
        description="Its stored bytes once it succeeded (as in its detail); null: not a "
        "successful backup"
    )
    stored_size: int | None = Field(
        description="The stored bytes (compressed, encrypted) of its artifacts, whatever its "
        "status: so far, while it runs; null: no artifact stored yet"
    )
    source_size: int | None = Field(
        description="The bytes its artifacts were made from; null: no artifact stored yet"
    )
    created_at: datetime = Field(description="When it was asked for")
    started_at: datetime | None = Field(description="When a worker started it")
    finished_at: datetime | None = Field(description="When it ended, successful or not")
    duration_seconds: float | None = Field(
        description="From its start to its end; null: not started or not ended yet"
    )

    @classmethod
    def of_listed(cls, listed: ListedBackup, *, url: str) -> "BackupSummary":
        backup = listed.backup
        duration = (
            round((backup.finished_at - backup.started_at).total_seconds(), 3)
            if backup.started_at is not None and backup.finished_at is not None
            else None
        )
        return cls(
            **cls._fields_of(backup, url),
            services=list(backup.services),
            only_config=backup.only_config,
            trigger=backup.trigger,
            error=backup.error,
            warning=backup.warning,
            size=backup.size,
            stored_size=listed.stored,
            source_size=listed.source,
            created_at=backup.created_at,
            started_at=backup.started_at,
            finished_at=backup.finished_at,
            duration_seconds=duration,
        )


class BackupList(ResponseModel):
    """A page of `GET /backups`, newest first."""

    backups: list[BackupSummary]
    next: str | None = Field(
        description="The `cursor` of the next page (with the same filters); null: this "
        "was the last page"
    )
