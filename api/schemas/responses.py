"""Response bodies: acknowledgements and errors, a backup's or restore's status, a
backup's detail with its artifacts and hook runs, health and readiness."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.schemas.fields import EXAMPLE_TS
from workers.catalog.models import Artifact, Backup, HookRun, Restore
from workers.timestamps import format_moment


class ResponseModel(BaseModel):
    """Every response body: camelCase in JSON (`bytesDone`), snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Message(ResponseModel):
    """Every acknowledgement and every error: `{"code": N, "message": "..."}`."""

    code: int = Field(description="The HTTP status code, repeated")
    message: str = Field(description="What was accepted, or what went wrong and what to fix")


class RestoreAccepted(Message):
    """`POST /ondemandrestore`: the acknowledgement, and the backup restored (the one the
    fleet picked, for a `targetTime`)."""

    timestamp: str = Field(
        description="The backup restored: the one given, or the one whose base backups the "
        "WAL is replayed onto, for a `targetTime`",
        examples=[EXAMPLE_TS],
    )


class Status(ResponseModel):
    """Where a backup lives and how its backup (or restore) went."""

    backupurl: str = Field(
        description="Where the backup lives: the S3 console, the Azure container, or a "
        "`file://` directory"
    )
    namespace: str = Field(description="The namespace the backup belongs to")
    status: str = Field(description="`Pending`, `Running`, `Success` or `Failed`")
    timestamp: str = Field(description="The backup's timestamp (UTC)", examples=[EXAMPLE_TS])

    @classmethod
    def of_backup(cls, backup: Backup, *, url: str) -> "Status":
        return cls(
            backupurl=url,
            namespace=backup.namespace,
            status=backup.status,
            timestamp=backup.timestamp,
        )

    @classmethod
    def of_restore(cls, restore: Restore) -> "Status":
        # `namespace` and `backupurl` name where the backup lives, not the target.
        return cls(
            backupurl=restore.backup_url,
            namespace=restore.source_namespace,
            status=restore.status,
            timestamp=restore.timestamp,
        )


class RestoreStatus(Status):
    """`restorestatus`: Status of the restore, and the moment it restores to (its `pitr`
    services' WAL replayed to it), if it is a restore to a moment."""

    target_time: str | None = Field(
        default=None,
        description="A restore to a moment: that moment (RFC 3339, UTC); null: the backup "
        "as it was",
        examples=["2023-02-02T16:42:07.250000Z"],
    )

    @classmethod
    def of_restore(cls, restore: Restore) -> "RestoreStatus":
        moment = restore.target_time
        return cls(
            **Status.of_restore(restore).model_dump(),
            target_time=format_moment(moment) if moment is not None else None,
        )


class BackupStatus(Status):
    """`backup/latest`: Status plus the last verification's verdict (null: never verified),
    and what was unusual about its sizes (null: nothing; it is Success all the same)."""

    verified: str | None = Field(
        default=None, description="The last verification's verdict; null: never verified"
    )
    verified_at: datetime | None = None
    size_anomaly: str | None = Field(
        default=None, description="What was unusual about its sizes; null: nothing"
    )

    @classmethod
    def of_backup(cls, backup: Backup, *, url: str) -> "BackupStatus":
        return cls(**cls._fields_of(backup, url))

    @staticmethod
    def _fields_of(backup: Backup, url: str) -> dict[str, Any]:
        """The fields `latest` and the backup's detail share."""
        return {
            **Status.of_backup(backup, url=url).model_dump(),
            "verified": backup.verified,
            "verified_at": backup.verified_at,
            "size_anomaly": backup.size_anomaly,
        }


class ArtifactDetail(ResponseModel):
    service: str
    volume: int
    key: str
    status: str
    bytes_done: int  # source bytes read so far: progress while Running
    size: int | None
    source_size: int | None
    sha256: str | None
    encryption: dict[str, str] | None
    error: str | None
    size_anomaly: str | None = None  # on a service's first volume: its sizes were unusual

    @classmethod
    def of(cls, artifact: Artifact) -> "ArtifactDetail":
        return cls(
            service=artifact.service,
            volume=artifact.volume,
            key=artifact.key,
            status=artifact.status,
            bytes_done=artifact.bytes_done,
            size=artifact.size,
            source_size=artifact.source_size,
            sha256=artifact.sha256,
            encryption=artifact.encryption,
            error=artifact.error,
            size_anomaly=artifact.size_anomaly,
        )


class HookRunDetail(ResponseModel):
    """One run of a service's `pre` or `post` hook; `output` is its redacted tail."""

    service: str
    hook: str
    attempt: int
    program: str
    status: str
    detail: str
    output: str
    started_at: datetime
    finished_at: datetime

    @classmethod
    def of(cls, run: HookRun) -> "HookRunDetail":
        return cls(
            service=run.service,
            hook=run.hook,
            attempt=run.attempt,
            program=run.program,
            status=run.status,
            detail=run.detail,
            output=run.output,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class BackupDetail(BackupStatus):
    services: list[str]
    only_config: bool
    trigger: str
    error: str | None
    warning: str | None  # what went wrong without failing it: a `post` hook that failed
    size: int | None
    started_at: datetime | None
    finished_at: datetime | None
    artifacts: list[ArtifactDetail]
    hooks: list[HookRunDetail]

    @classmethod
    def of(cls, backup: Backup, *, url: str) -> "BackupDetail":
        """Call inside the session: it reads the backup's artifacts."""
        return cls(
            **cls._fields_of(backup, url),
            services=list(backup.services),
            only_config=backup.only_config,
            trigger=backup.trigger,
            error=backup.error,
            warning=backup.warning,
            size=backup.size,
            started_at=backup.started_at,
            finished_at=backup.finished_at,
            artifacts=[ArtifactDetail.of(artifact) for artifact in backup.artifacts],
            hooks=[HookRunDetail.of(run) for run in backup.hook_runs],
        )


class Health(BaseModel):
    status: str = Field(description="`ok`", examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(description="`ready`, or `not ready`", examples=["ready"])
    checks: dict[str, str] = Field(
        description="Each check (`catalog`, `broker`, `store`): `ok`, or why it failed",
        examples=[{"catalog": "ok", "broker": "ok", "store": "ok"}],
    )


class NotReady(Readiness):
    """`/readyz` when a check failed: the checks, and a message naming the failed ones."""

    code: int = Field(description="503")
    message: str = Field(description="`not ready: ` and each failed check with why")
