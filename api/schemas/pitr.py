"""`backup/latest` of a namespace with `pitr` services: each one's recoverable window and
streaming lag beside the backup's status (workers/pitr/window.py, wal_streams)."""

from pydantic import Field

from api.schemas.responses import BackupStatus, ResponseModel


class PitrWindowStatus(ResponseModel):
    """One `pitr` service: the moments a restore to a moment can reach, and its WAL's lag."""

    service: str
    earliest: str | None = Field(
        description="The earliest moment restorable (RFC 3339, UTC): the consistent point of "
        "the oldest base backup from which the shipped WAL is continuous; null: no window",
        examples=["2023-02-01T00:03:15.120000Z"],
    )
    latest: str | None = Field(
        description="The latest moment restorable (RFC 3339, UTC): the last moment all the WAL "
        "the server had written was shipped; null: no window",
        examples=["2023-02-02T16:42:05.871000Z"],
    )
    reason: str | None = Field(
        default=None, description="Why there is no window (e.g. no base backup since a gap)"
    )
    pitr_window: str = Field(
        description="How far back the window is promised (`pitr_window`, else PITR_WINDOW)",
        examples=["7d"],
    )
    streaming: bool = Field(description="A streamer ships its WAL now")
    lag_seconds: float | None = Field(
        description="Seconds since all the WAL the server had written was last shipped; null: "
        "never streamed"
    )
    lag_bytes: int | None = Field(
        description="Bytes of WAL the server wrote that are not shipped yet; null: unknown"
    )


class LatestBackupStatus(BackupStatus):
    """`backup/latest`: BackupStatus, and for each `pitr` service of the namespace its
    recoverable window and streaming lag (an empty list: no `pitr` service)."""

    pitr: list[PitrWindowStatus] = Field(
        default_factory=list,
        description="Each `pitr` service's recoverable window and streaming lag",
    )
