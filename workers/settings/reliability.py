"""Long-task reliability and time limits (issue 4): stale uploads, Celery's visibility
timeout, the backup time limits, the namespace lock, redeliveries, beat's lock, hooks."""

from typing import Annotated, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings

from workers.timestamps import parse_duration


class ReliabilitySettings(BaseSettings):
    """Time limits kept consistent, so a running backup is never handed to a second worker."""

    stale_upload_age: Annotated[int, Field(ge=60)] = Field(
        default=86400,
        description="seconds after which an unfinished multipart upload no running backup "
        "owns is aborted",
    )
    abort_stale_uploads_schedule: str = Field(
        default="30 * * * *", description="cron of that sweep (queue `maintenance`)"
    )
    celery_result_expires: Annotated[int, Field(ge=60)] = Field(
        default=86400, description="seconds a task result is kept"
    )
    # Long-task reliability (issue 4). Tests shorten these; the validator below
    # keeps them consistent so a running backup is never handed to a second worker.
    celery_visibility_timeout: Annotated[int, Field(ge=10)] = Field(
        default=12 * 3600,
        description="seconds (the default: 12 h) Redis waits for an unacknowledged task "
        "before handing it to another worker; must exceed `BACKUP_TIME_LIMIT`",
    )
    backup_soft_time_limit: Annotated[int, Field(ge=5)] = Field(
        default=10 * 3600,
        description="seconds (the default: 10 h) after which a backup or restore is "
        "stopped: its upload aborted, its failure recorded",
    )
    backup_time_limit: Annotated[int, Field(ge=10)] = Field(
        default=10 * 3600 + 600,
        description="seconds after which its process is killed (after the soft limit)",
    )
    backup_lock_ttl: Annotated[int, Field(ge=3, le=3600)] = Field(
        default=120,
        description="seconds the namespace lock lives without a heartbeat (beats every third "
        "of it)",
    )
    lock_redis_url: str | None = Field(
        default=None, description="Redis URL for the namespace locks (unset: the broker's)"
    )
    task_max_redeliveries: Annotated[int, Field(ge=0, le=100)] = Field(
        default=3,
        description="deliveries of a backup or restore after a lost worker before it is "
        "failed with the reason",
    )
    scheduled_backup_wait: Annotated[int, Field(ge=0)] = Field(
        default=900,
        description="seconds a scheduled backup waits for a busy namespace before it is "
        "skipped (and recorded)",
    )
    beat_lock_timeout: Annotated[int, Field(ge=5, le=600)] = Field(
        default=30,
        description="seconds the active beat's lock lives; a standby takes over within it "
        "plus a third of it",
    )
    catalog_retry_seconds: Annotated[int, Field(ge=0)] = Field(
        default=300,
        description="how long a running backup or restore retries a catalog write through "
        "an outage",
    )
    # How long a service's `pre`/`post` hook may run (its own `timeout` wins): 10m, 90s, 1h.
    backup_hook_timeout: str = Field(
        default="10m",
        description="how long a service's `pre` or `post` hook may run before its process "
        "group is stopped (a hook's own `timeout` wins): `10m`, `90s`, `1h` or seconds; a "
        "`post` hook's may not exceed `BACKUP_TIME_LIMIT` minus `BACKUP_SOFT_TIME_LIMIT` "
        "([Hooks](../configuration/services-file.md#hooks-commands-around-a-services-dump))",
    )

    @model_validator(mode="after")
    def _limits_fit_the_visibility_timeout(self) -> Self:
        # Redis hands an unacknowledged task to another worker once the visibility
        # timeout passes: every backup must be killed well before that.
        if not self.backup_soft_time_limit < self.backup_time_limit:
            raise ValueError("BACKUP_SOFT_TIME_LIMIT must be less than BACKUP_TIME_LIMIT")
        if not self.backup_time_limit < self.celery_visibility_timeout:
            raise ValueError("BACKUP_TIME_LIMIT must be less than CELERY_VISIBILITY_TIMEOUT")
        if self.scheduled_backup_wait >= self.celery_visibility_timeout:
            raise ValueError("SCHEDULED_BACKUP_WAIT must be less than CELERY_VISIBILITY_TIMEOUT")
        return self

    @property
    def hook_timeout_seconds(self) -> int:
        """BACKUP_HOOK_TIMEOUT in seconds."""
        return parse_duration(self.backup_hook_timeout)

    @property
    def busy_retry_countdown(self) -> int:
        """Seconds a job waits before trying a busy namespace again.

        Redis holds a delayed task unacknowledged until its ETA, so the wait
        must stay well inside the visibility timeout, or it would be delivered twice.
        """
        return max(1, min(60, self.backup_lock_ttl, self.celery_visibility_timeout // 4))
