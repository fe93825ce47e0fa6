"""The Settings class: every group of variables in one frozen model, and the checks that
span groups (cron expressions, Redis URLs, sizes, durations)."""

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from workers.settings.contract import ContractSettings
from workers.settings.core import CoreSettings
from workers.settings.parsing import parse_size
from workers.settings.pitr import PitrSettings
from workers.settings.policy import PolicySettings
from workers.settings.reliability import ReliabilitySettings
from workers.settings.storage import StorageSettings
from workers.settings.store_details import StoreDetailsSettings
from workers.settings.transfer import TransferSettings
from workers.timestamps import parse_cron, parse_duration


# Pydantic lists a model's fields from its last base to its first, then its own: the
# groups are named here in the reverse of the order the docs show them in. Field
# validators of a group's own fields live in its module; those that span groups, here.
class Settings(
    PitrSettings,
    StorageSettings,
    PolicySettings,
    ReliabilitySettings,
    TransferSettings,
    CoreSettings,
    StoreDetailsSettings,
    ContractSettings,
):
    # An empty variable means "not set" (compose's `${VAR:-}`, Kubernetes' optional keys).
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True
    )

    # Each description (here and in every group) is the documentation of its variable:
    # Markdown rendered into docs/reference/settings.md by `make docs` (links are relative
    # to that page). A field of Settings itself comes last on that page.
    backfleet_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR`"
    )

    @field_validator(
        "uevents_schedule",
        "uevents_gc_schedule",
        "regular_backup_schedule",
        "abort_stale_uploads_schedule",
        "verify_schedule",
        "restore_test_schedule",
        "retention_schedule",
        "staleness_check_schedule",
        "secondary_copy_schedule",
        "reconcile_schedule",
    )
    @classmethod
    def _valid_cron(cls, value: str, info: ValidationInfo) -> str:
        # Defaults are checked by a test: parsing needs celery (~80 ms to import),
        # which every CLI command would otherwise pay just to read the settings.
        if info.field_name is None or value != cls.model_fields[info.field_name].default:
            parse_cron(value)
        return value

    @field_validator("broker_url", "result_backend_url", "lock_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "redis+socket://")):
            raise ValueError("must be a redis://, rediss:// or redis+socket:// URL")
        return value

    @field_validator(
        "backup_part_size",
        "backup_volume_size",
        "storage_budget_bytes",
        "size_anomaly_min_bytes",
        "wal_slot_max_retained",
        mode="before",
    )
    @classmethod
    def _size_with_unit(cls, value: object) -> object:
        """`16MiB` as well as `16777216`; the range check follows on the bytes."""
        return parse_size(value) if isinstance(value, str) else value

    @field_validator(
        "backup_max_age",
        "backup_rto",
        "verify_every",
        "test_restore_every",
        "test_restore_period",
        "backup_hook_timeout",
        "rehydration_timeout",
        "pitr_scratch_timeout",
        "pitr_window",
        "wal_rpo",
    )
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def locks_url(self) -> str:
        return self.lock_redis_url or self.broker_url
