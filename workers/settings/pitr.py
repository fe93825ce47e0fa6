"""Point-in-time recovery of PostgreSQL services with `pitr = true` (workers/pitr/)."""

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings

from workers.settings.parsing import MiB
from workers.timestamps import parse_duration


class PitrSettings(BaseSettings):
    # --- point-in-time recovery: the WAL streamers (`backfleet wal`, workers/pitr/) ---
    wal_ship_interval: Annotated[int, Field(ge=1, le=300)] = Field(
        default=5,
        description="seconds between two shipments of a `pitr` service's growing WAL segment "
        "(its `.partial`, when it grew): the most a disaster loses, plus the upload "
        "([Point-in-time recovery](../concepts/pitr.md#the-streamer))",
    )
    wal_lock_ttl: Annotated[int, Field(ge=3, le=600)] = Field(
        default=15,
        description="seconds a streamer's lock lives without a heartbeat (it beats every "
        "third of it): a standby `backfleet wal` takes a dead streamer's service over within "
        "this plus a second ([the lock](../concepts/pitr.md#one-streamer-per-service-and-a-"
        "standby))",
    )
    wal_slot_max_retained: Annotated[int, Field(ge=16 * MiB)] = Field(
        default=1024 * MiB,
        description="the `wal.retained` alert opens when a `pitr` service's replication slot "
        "holds more WAL than this on the database server (`1GiB`, `500MB` or bytes): its "
        "disk fills while nobody drains the slot",
    )
    wal_rpo: str = Field(
        default="1m",
        description="the `wal.lag` alert opens when a `pitr` service's shipped WAL is older "
        "than this behind what the server wrote (`1m`, `30s` or seconds)",
    )
    wal_spool_dir: Path | None = Field(
        default=None,
        description="where each streamer's `pg_receivewal` writes before the segments are "
        "shipped (a folder per service, emptied when a streamer takes the service; unset: "
        "`backfleet-wal` in `BACKFLEET_WORK_DIR` or the system temp dir); a few segments "
        "per service (16 MiB each)",
    )
    wal_verify_sample: Annotated[int, Field(ge=0, le=10000)] = Field(
        default=20,
        description="WAL files of each `pitr` service that each verification pass reads back "
        "(`backfleet verify`, VERIFY_SCHEDULE): the newest not yet verified first, then "
        "random older ones, and every one whose last check failed; 0: the WAL is not "
        "verified ([Verifying the WAL](../concepts/pitr.md#verifying-the-wal))",
    )
    pitr_window: str = Field(
        default="7d",
        description="how far back a `pitr` service is promised to be restorable to any moment, "
        "unless its `pitr_window` says otherwise: retention keeps the newest base backup "
        "consistent at or before that long ago, and the WAL from there on; `backup/latest` "
        "and `backfleet status` show it beside the recoverable window (`7d`, `36h` or "
        "seconds; [Retention of the WAL](../concepts/pitr.md#retention-of-the-wal), "
        "[Restoring to a moment](../concepts/pitr.md#restoring-to-a-moment))",
    )
    # --- point-in-time recovery: restoring base backups (services with `pitr = true`) ---
    pitr_scratch_dir: Path | None = Field(
        default=None,
        description="where a restore of a base backup unpacks it and runs its scratch "
        "PostgreSQL (each in a private folder, removed afterwards; it needs room for the "
        "whole cluster); unset: `backfleet-pitr` in the system temp dir. A worker running as "
        "root runs PostgreSQL as the `postgres` user, which must be able to reach it "
        "([Base backups](../concepts/pitr.md#base-backups-and-the-scratch-instance))",
    )
    pitr_scratch_timeout: str = Field(
        default="1h",
        description="how long a scratch PostgreSQL may take to start and finish its recovery "
        "before it is stopped and the restore fails: `1h`, `90m` or seconds",
    )

    @property
    def pitr_window_seconds(self) -> int:
        """PITR_WINDOW in seconds."""
        return parse_duration(self.pitr_window)

    @property
    def wal_rpo_seconds(self) -> int:
        """WAL_RPO in seconds."""
        return parse_duration(self.wal_rpo)

    @property
    def pitr_scratch_timeout_seconds(self) -> int:
        """PITR_SCRATCH_TIMEOUT in seconds."""
        return parse_duration(self.pitr_scratch_timeout)
