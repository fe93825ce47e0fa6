"""A service's protection policy: the services-file keys and their fleet-wide defaults.

Each key may be set on a service; `retention` may also be set on a namespace.
What is unset falls back, in this order, to the namespace's `[retention]`
table (retention counts only) and then to the settings:

    key            fleet-wide default            means
    retention      RETENTION_KEEP_*              the GFS counts of this service's backups
    max_age        BACKUP_MAX_AGE (see below)    freshness: the newest Success is at most this old
    rto            BACKUP_RTO                    the recovery-time objective a drill is judged by
    verify         VERIFY_EVERY                  how often its newest backup is verified
    test_restore   TEST_RESTORE_EVERY            how often it is restored into scratch (a drill)

Durations read like BACKUP_MAX_AGE: `90m`, `2h`, `7d`, `1w` or seconds.
"""

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from workers.settings import Settings, parse_duration

RETENTION_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")


class RetentionSpec(BaseModel):
    """GFS counts (`keep-hourly = 48`…) of a namespace or a service; unset ones fall back."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=lambda name: name.replace("_", "-"),
        populate_by_name=True,
    )
    keep_hourly: Annotated[int, Field(ge=-1)] | None = None
    keep_daily: Annotated[int, Field(ge=-1)] | None = None
    keep_weekly: Annotated[int, Field(ge=-1)] | None = None
    keep_monthly: Annotated[int, Field(ge=-1)] | None = None
    keep_yearly: Annotated[int, Field(ge=-1)] | None = None

    def over(self, fallback: "RetentionSpec") -> "RetentionSpec":
        """These counts, with `fallback`'s wherever this one leaves a count unset."""
        return fallback.model_copy(update=self.model_dump(exclude_none=True))

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetentionSpec":
        return cls(
            keep_hourly=settings.retention_keep_hourly,
            keep_daily=settings.retention_keep_daily,
            keep_weekly=settings.retention_keep_weekly,
            keep_monthly=settings.retention_keep_monthly,
            keep_yearly=settings.retention_keep_yearly,
        )


def check_duration(value: str | None) -> str | None:
    """A services-file duration is checked when the file is read, not when first used."""
    if value is not None:
        parse_duration(value)
    return value


@dataclass(frozen=True)
class ServicePolicy:
    """What a service is promised, every default resolved (durations in seconds).

    `max_age` is None when neither the service nor the settings give one and the
    service has a schedule of its own: the freshness check then derives it from
    that schedule (its longest gap between runs, plus BACKUP_MAX_AGE as grace), so a
    weekly service is not "stale" six days a week (workers/monitoring/health.py,
    service_max_age).
    """

    retention: RetentionSpec  # every count set
    max_age: int | None
    rto: int
    verify: int
    test_restore: int
