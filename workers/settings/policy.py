"""Proving backups, keeping the right ones, saying when something is wrong: verification,
drills, retention counts, freshness, alerts and size anomalies."""

from typing import Annotated, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from workers.settings.parsing import MiB, check_growth_factor
from workers.timestamps import parse_duration


class PolicySettings(BaseSettings):
    """The fleet-wide defaults of each service's policies (the services file wins)."""

    verify_schedule: str = Field(
        default="0 3 * * *",
        description="cron of the verification (queue `verify`): every artifact of the "
        "newest backup of each service that is due (its `verify` cadence, `VERIFY_EVERY`) "
        "and a rotating sample of older ones read back and checked "
        "([Verification](../concepts/verification-and-drills.md#verification))",
    )
    verify_sample_size: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=3,
        description="older backups per namespace added to each verification, least "
        "recently verified first",
    )
    restore_test_schedule: str = Field(
        default="0 4 * * 0",
        description="cron of the drills, test restores into scratch targets (queue "
        "`verify`): each run drills the services that are due "
        "([Drills](../concepts/verification-and-drills.md#drills-every-service-every-"
        "retained-backup)); run it at least as often as the shortest `test_restore` cadence",
    )
    retention_schedule: str = Field(
        default="30 2 * * *", description="cron of the retention pass (queue `maintenance`)"
    )
    retention_keep_hourly: Annotated[int, Field(ge=-1)] = Field(
        default=24,
        description="grandfather-father-son retention of each service's backups: hourly "
        "backups kept, where neither the service's `[services.<name>.retention]` nor the "
        "namespace's `[retention]` sets the count ([restic's semantics]"
        "(../concepts/retention.md)); `-1` keeps every period, `0` turns a rule off; all "
        "five `RETENTION_KEEP_*` at `0` is refused at start (it would keep nothing)",
    )
    retention_keep_daily: Annotated[int, Field(ge=-1)] = Field(
        default=30, description="daily backups kept, as `RETENTION_KEEP_HOURLY` says"
    )
    retention_keep_weekly: Annotated[int, Field(ge=-1)] = Field(
        default=12, description="weekly backups kept, as `RETENTION_KEEP_HOURLY` says"
    )
    retention_keep_monthly: Annotated[int, Field(ge=-1)] = Field(
        default=84, description="monthly backups kept, as `RETENTION_KEEP_HOURLY` says"
    )
    retention_keep_yearly: Annotated[int, Field(ge=-1)] = Field(
        default=0, description="yearly backups kept, as `RETENTION_KEEP_HOURLY` says"
    )
    backup_max_age: str = Field(
        default="2h",
        description="the RPO: a service whose latest successful backup is older is stale "
        "(alert and metric), unless its own `max_age` says otherwise; a service with a "
        "`schedule` of its own and no `max_age` gets its schedule's longest gap plus this "
        "as grace ([Freshness](../concepts/namespaces-and-services.md#freshness-per-"
        "service)); `2h`, `90m`, `1d` or seconds",
    )
    # Each service's defaults for its own `rto`, `verify` and `test_restore` keys.
    backup_rto: str = Field(
        default="4h",
        description="the recovery-time objective a service's drills and restores are judged "
        "by, when its own `rto` key is unset",
    )
    verify_every: str = Field(
        default="1d",
        description="how often each service's newest backup is verified, when its own "
        "`verify` key is unset (the verification runs on `VERIFY_SCHEDULE`, and takes the "
        "services whose last successful verification started longer ago than this, less a "
        "tenth of it, at most an hour, before the pass started, or whose newest backup's "
        "latest check failed)",
    )
    test_restore_every: str = Field(
        default="7d",
        description="how often each service is restored into scratch (a drill), when its "
        "own `test_restore` key is unset (drills run on `RESTORE_TEST_SCHEDULE`, which "
        "should run at least this often)",
    )
    # Over this period every retained backup of each service is drilled at least once.
    test_restore_period: str = Field(
        default="30d",
        description="every retained backup of each service is drilled at least once in this "
        "period: each run drills as many of them as that takes "
        "([Drills](../concepts/verification-and-drills.md#drills-every-service-every-"
        "retained-backup))",
    )
    staleness_check_schedule: str = Field(
        default="*/5 * * * *",
        description="cron of the staleness check, which also judges the drills (overdue, "
        "failed, over their RTO) and re-sends the alert messages still owed to the webhook "
        "(queue `maintenance`)",
    )
    reconcile_schedule: str = Field(
        default="*/5 * * * *",
        description="cron of the reconciler, which settles `Pending`/`Running` backups and "
        "restores whose worker was lost (queue `maintenance`; [what the fleet guarantees]"
        "(../fleet.md#what-the-fleet-guarantees)); often, so a blocked namespace is freed "
        "within minutes",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible webhook for alerts: a message when an alert opens, one "
        "when it resolves ([Alerts](../operations/alerts.md); a secret: never logged); unset: "
        "alerts are recorded, logged once and listed by `backfleet alerts`; nothing is sent or "
        "queued",
    )
    alert_webhook_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        default=5,
        description="tries per message (exponential backoff with jitter, 1 s doubling to 30 s)",
    )
    alert_webhook_timeout: Annotated[float, Field(gt=0, le=120)] = Field(
        default=10.0, description="seconds per try of an alert message"
    )
    # Size anomalies (workers/monitoring/sizes.py): each service of a successful backup against
    # the median of its last N successful ones. A drop is the fraction below the median, a
    # growth the factor above it; 0 turns either off (a 0-byte dump is always an anomaly).
    size_anomaly_history: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=7,
        description="a successful backup's services are compared with the median of their "
        "last this many successful backups ([size anomalies](../concepts/size-anomalies.md)); "
        "no judgement before 3 of them (or this many, if fewer), `0`: only 0-byte dumps are "
        "anomalies",
    )
    size_anomaly_drop: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.5,
        description="a service's source or stored bytes more than this fraction below that "
        "median is an anomaly (0-0.99…; `0.5`: under half of it); `0` turns drops off; a "
        "service's `size_drop` wins",
    )
    size_anomaly_growth: Annotated[float, Field(ge=0, le=1_000_000)] = Field(
        default=3.0,
        description="… or more than this factor above it (above 1); `0` turns growth off; a "
        "service's `size_growth` wins",
    )
    # A change smaller than min_bytes is none: a 2 KiB config dump that grows to 7 KiB.
    size_anomaly_min_bytes: Annotated[int, Field(ge=0)] = Field(
        default=1 * MiB,
        description="… unless its source or stored bytes differ from that median by less than "
        "this (a size such as `1MiB`, `500kB` or `1048576`): a tiny service's swings are no "
        "anomaly; `0`: no floor; a 0-byte dump is an anomaly whatever this says",
    )

    @field_validator("size_anomaly_growth")
    @classmethod
    def _growth_factor(cls, value: float) -> float:
        check_growth_factor(value)
        return value

    @field_validator("alert_webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _retention_keeps_something(self) -> Self:
        # All counts at 0 would delete every backup that is not pinned or protected.
        names = [f"retention_keep_{p}" for p in ("hourly", "daily", "weekly", "monthly", "yearly")]
        if all(getattr(self, name) == 0 for name in names):
            listed = ", ".join(name.upper() for name in names)
            raise ValueError(f"{listed} are all 0: retention would keep nothing")
        return self

    @property
    def max_age_seconds(self) -> int:
        """BACKUP_MAX_AGE in seconds."""
        return parse_duration(self.backup_max_age)
