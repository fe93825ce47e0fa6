"""Point-in-time recovery of PostgreSQL services with `pitr = true` (workers/pitr/)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings

from workers.timestamps import parse_duration


class PitrSettings(BaseSettings):
    # --- point-in-time recovery (services with `pitr = true`) ---
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
    def pitr_scratch_timeout_seconds(self) -> int:
        """PITR_SCRATCH_TIMEOUT in seconds."""
        return parse_duration(self.pitr_scratch_timeout)
