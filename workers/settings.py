"""One typed Settings object read from the environment and validated at start.

Every field's environment variable is its name in upper case (see the README's
table). Invalid values stop the start with a message naming the variable and
never echoing a secret.
"""

import math
import re
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# ApiKey and parse_api_keys are re-exported: callers import them from here.
from workers.api_keys import ApiKey as ApiKey
from workers.api_keys import configured_keys
from workers.api_keys import parse_api_keys as parse_api_keys
from workers.errors import ConfigError

# parse_duration is re-exported: callers import it from here too.
from workers.timestamps import parse_cron
from workers.timestamps import parse_duration as parse_duration

MiB = 1024 * 1024
StoreType = Literal["local", "s3", "azure-blob-storage"]


def _size_units() -> dict[str, int]:
    """`k`, `kb` (decimal) and `kib` (binary) for each prefix, and plain bytes."""
    units = {"": 1, "b": 1}
    for power, prefix in enumerate("kmgt", start=1):
        units |= {prefix: 1000**power, f"{prefix}b": 1000**power, f"{prefix}ib": 1024**power}
    return units


_SIZE_UNITS = _size_units()


def parse_size(text: str) -> int:
    """`100MB`, `64MiB`, `1g`, `2TiB` or a plain number of bytes."""
    number = text.strip()
    digits = number.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/ ")
    unit = number[len(digits) :].strip().lower().removesuffix("/s")
    if unit not in _SIZE_UNITS or not digits.replace(".", "", 1).isdigit():
        raise ValueError(f"{text!r} is not a size such as 50MB, 64MiB or 1048576")
    return int(float(digits) * _SIZE_UNITS[unit])


_PRICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def parse_storage_prices(text: str) -> dict[str, float]:
    """`STANDARD=0.023,Hot=0.018`: a price per GiB-month for each storage class (tier),
    any currency; names as the store spells them (case matters). Empty: no prices."""
    prices: dict[str, float] = {}
    for entry in (item.strip() for item in text.split(",")):
        if not entry:
            continue
        name, sep, raw = (part.strip() for part in entry.partition("="))
        if not sep or not _PRICE_NAME.match(name):
            raise ValueError(
                f"entry {entry!r} is not NAME=PRICE with a storage class name such as "
                "STANDARD, STANDARD_IA or Hot (e.g. STANDARD=0.023,Hot=0.018)"
            )
        try:
            price = float(raw)
        except ValueError:
            price = math.nan
        if not math.isfinite(price) or price < 0:
            raise ValueError(
                f"the price of {name} ({raw!r}) must be a number of at least 0: "
                "the price of one GiB stored for a month, e.g. 0.023"
            )
        if name in prices:
            raise ValueError(f"{name} is priced twice")
        prices[name] = price
    return prices


# The GFS rules, warmest (kept for the shortest time) first: operations/gfs.py's PERIODS.
STORAGE_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")


def parse_storage_classes(text: str) -> dict[str, str]:
    """`monthly=STANDARD_IA,yearly=DEEP_ARCHIVE` -> {rule: class}; ValueError names the fault.

    STORAGE_CLASSES: the storage class a backup kept only by that rule belongs in
    (workers/operations/tiers.py). Only its form is checked here; check_classes checks
    the names against the configured store's classes when the fleet is built.
    """
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        rule, _, storage_class = (piece.strip() for piece in item.partition("="))
        if rule not in STORAGE_RULES or not storage_class:
            raise ValueError(
                f"{item!r} is not `rule=CLASS` with a rule among {', '.join(STORAGE_RULES)}, "
                "e.g. monthly=STANDARD_IA,yearly=DEEP_ARCHIVE"
            )
        if rule in mapping:
            raise ValueError(f"rule {rule} is given twice")
        mapping[rule] = storage_class
    return mapping


def check_classes(
    mapping: Mapping[str, str],
    available: Sequence[str],
    store_kind: str,
    archive: Collection[str] = (),
) -> None:
    """Every class named must be one the store has, and colder rules must not name warmer
    classes (a yearly backup in a warmer class than a monthly one is a slip of the pen).

    An archive class (`archive`: read only after a rehydration) may only be the coldest
    class named: moving an archived object on to another class means rehydrating it
    first (S3 copies no GLACIER object that is not restored; Azure's only way out of
    Archive is a rehydration), which retention does not do.
    """
    if mapping and not available:
        raise ValueError(f"the {store_kind} store has a single storage class: leave it empty")
    for rule, storage_class in mapping.items():
        if storage_class not in available:
            raise ValueError(
                f"{rule}={storage_class}: the {store_kind} store's classes are "
                f"{', '.join(available)}"
            )
    named = [mapping[rule] for rule in STORAGE_RULES if rule in mapping]
    ordered = [available.index(storage_class) for storage_class in named]
    if ordered != sorted(ordered):
        raise ValueError("a colder rule names a warmer class than a warmer rule does")
    for storage_class in named:
        if storage_class in archive and storage_class != named[-1]:
            raise ValueError(
                f"{storage_class} is an archive class: only the coldest class named may be "
                f"one (an archived object moves on only after a rehydration), not {named[-1]}"
            )


def parse_file_mode(text: str) -> int:
    """An octal file mode with read/write bits only, the owner's included: `0600`, `640`."""
    if not re.fullmatch(r"0?[0-7]{3}", text.strip()):
        raise ValueError("must be an octal file mode such as 0600 or 0640")
    mode = int(text.strip(), 8)
    if mode & 0o111:
        raise ValueError("must not set execute bits: folders get them from the read bits")
    if mode & 0o600 != 0o600:
        raise ValueError("must let the owner read and write (0600 at least)")
    return mode


def check_growth_factor(value: float) -> None:
    """A size growth factor: above 1 (3.0: three times the median), or 0 for off."""
    if value != 0 and value <= 1:
        raise ValueError(
            "must be a factor above 1 (e.g. 3 for three times the median), or 0 for off"
        )


class Settings(BaseSettings):
    # An empty variable means "not set" (compose's `${VAR:-}`, Kubernetes' optional keys).
    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, env_ignore_empty=True
    )

    # --- the existing product's contract (DESIGN.md section 1) ---
    enable_regular_backups: bool = False
    enable_user_events: bool = False
    uevents_schedule: str = "0 0 * * *"
    uevents_gc_schedule: str = "0 1 * * *"
    uevents_retention_days: Annotated[int, Field(ge=1, le=36500)] = 30
    uevents_batch_events: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    uevents_file_max_bytes: Annotated[int, Field(ge=64 * 1024, le=1024 * MiB)] = 64 * MiB
    object_store_location_type: StoreType = "local"
    object_store_location_local: Path = Path("/backup")
    # Octal; folders get the matching x bits. Only read/write bits: 0600, 0640, 0660, 0644…
    object_store_local_file_mode: str = "0600"
    aws_s3_bucket_name: str = "athena-ondemand-backup"
    aws_s3_bucket_url_prefix: str = "https://s3.console.aws.amazon.com/s3/buckets/"
    aws_s3_bucket_url_suffix: str = "&prefix=%v/%v/&showversions=false"
    aws_s3_region: str = "us-west-2"
    aws_access_key: SecretStr | None = None
    aws_secret_key: SecretStr | None = None
    aws_s3_endpoint_url: str | None = None
    azure_storage_account_name: str = "prophecyathenabackup"
    azure_storage_account_service_url: str = "https://prophecyathenabackup.blob.core.windows.net/"
    azure_storage_container_name: str = "athena-ondemand-backup"
    azure_storage_access_key: SecretStr | None = None

    # --- S3 and Azure details beyond the contract ---
    aws_s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    aws_s3_checksum_algorithm: Literal["CRC32", "CRC32C", "SHA256", "MD5", "none"] = "CRC32"
    aws_s3_sse: Literal["", "AES256", "aws:kms"] = ""
    aws_s3_sse_kms_key_id: str | None = None
    aws_s3_object_lock_mode: Literal["", "GOVERNANCE", "COMPLIANCE"] = ""
    aws_s3_object_lock_days: Annotated[int, Field(ge=0, le=36500)] = 0
    # A multipart object's SHA-256 goes into its user metadata by a copy onto itself.
    aws_s3_sha256_metadata: bool = True
    azure_storage_sas_token: SecretStr | None = None
    azure_storage_connection_string: SecretStr | None = None

    # --- Backfleet's own ---
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("BROKER_URL", "REDIS_URL"),
    )
    result_backend_url: str | None = None
    database_url: str = "sqlite:///./var/backfleet.db"
    backfleet_api_keys: SecretStr = SecretStr("")
    backfleet_api_keys_file: Path | None = None  # hashed keys (TOML): workers/api_keys.py
    # Signs the catalog page's session cookies (api/session.py); unset: derived from the keys
    # of BACKFLEET_API_KEYS. Every API replica needs the same one.
    backfleet_ui_secret: SecretStr | None = None
    # A restore from a namespace this fleet does not configure (another cluster's backups).
    backfleet_allow_unconfigured_source_namespaces: bool = False
    backfleet_config: Path = Path("./backfleet.toml")
    backfleet_namespace: str | None = None
    regular_backup_schedule: str = "0 * * * *"
    backfleet_api_host: str = "127.0.0.1"
    backfleet_api_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    backup_part_size: Annotated[int, Field(ge=1 * MiB, le=5 * 1024 * MiB)] = 5 * MiB
    backup_compression_level: Annotated[int, Field(ge=-7, le=22)] = 1
    backfleet_work_dir: Path | None = None
    backup_upload_concurrency: Annotated[int, Field(ge=1, le=64)] = 3
    backup_max_bandwidth: str = "0"  # bytes per second, e.g. 50MB or 100MiB; 0 = unlimited
    backup_retry_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    backup_retry_base_delay: Annotated[float, Field(ge=0, le=60)] = 0.5
    backup_retry_max_delay: Annotated[float, Field(ge=0, le=600)] = 30.0
    backup_volume_size: Annotated[int, Field(ge=1 * MiB)] = 512 * MiB
    backup_volume_concurrency: Annotated[int, Field(ge=1, le=16)] = 2
    restore_direct_writes: bool = True  # O_DIRECT for restored files of 1 MiB and more
    backup_direct_reads: bool = True  # O_DIRECT for uncached bytes of files of 1 MiB and more
    backup_encryption_key: SecretStr | None = None
    backup_encryption_old_keys: SecretStr | None = None
    # Signs every manifest (HMAC-SHA256) when set; else the key comes from BACKUP_ENCRYPTION_KEY.
    # Comma-separated: the first signs, the others still verify (a rotation).
    backup_signing_key: SecretStr | None = None
    stale_upload_age: Annotated[int, Field(ge=60)] = 86400
    abort_stale_uploads_schedule: str = "30 * * * *"
    celery_result_expires: Annotated[int, Field(ge=60)] = 86400
    # Long-task reliability (issue 4). Tests shorten these; the validator below
    # keeps them consistent so a running backup is never handed to a second worker.
    celery_visibility_timeout: Annotated[int, Field(ge=10)] = 12 * 3600
    backup_soft_time_limit: Annotated[int, Field(ge=5)] = 10 * 3600
    backup_time_limit: Annotated[int, Field(ge=10)] = 10 * 3600 + 600
    backup_lock_ttl: Annotated[int, Field(ge=3, le=3600)] = 120
    lock_redis_url: str | None = None
    task_max_redeliveries: Annotated[int, Field(ge=0, le=100)] = 3
    scheduled_backup_wait: Annotated[int, Field(ge=0)] = 900
    beat_lock_timeout: Annotated[int, Field(ge=5, le=600)] = 30
    catalog_retry_seconds: Annotated[int, Field(ge=0)] = 300
    # How long a service's `pre`/`post` hook may run (its own `timeout` wins): 10m, 90s, 1h.
    backup_hook_timeout: str = "10m"
    # --- proving backups, keeping the right ones, saying when something is wrong ---
    verify_schedule: str = "0 3 * * *"
    verify_sample_size: Annotated[int, Field(ge=0, le=1000)] = 3
    restore_test_schedule: str = "0 4 * * 0"
    retention_schedule: str = "30 2 * * *"
    retention_keep_hourly: Annotated[int, Field(ge=-1)] = 24
    retention_keep_daily: Annotated[int, Field(ge=-1)] = 30
    retention_keep_weekly: Annotated[int, Field(ge=-1)] = 12
    retention_keep_monthly: Annotated[int, Field(ge=-1)] = 84
    retention_keep_yearly: Annotated[int, Field(ge=-1)] = 0
    backup_max_age: str = "2h"  # the RPO: e.g. 2h, 90m, 1d or seconds
    # Each service's defaults for its own `rto`, `verify` and `test_restore` keys.
    backup_rto: str = "4h"
    verify_every: str = "1d"
    test_restore_every: str = "7d"
    # Over this period every retained backup of each service is drilled at least once.
    test_restore_period: str = "30d"
    staleness_check_schedule: str = "*/5 * * * *"
    reconcile_schedule: str = "*/5 * * * *"  # settles rows whose worker was lost
    alert_webhook_url: SecretStr | None = None
    alert_webhook_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    alert_webhook_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Size anomalies (workers/monitoring/sizes.py): each service of a successful backup against
    # the median of its last N successful ones. A drop is the fraction below the median, a
    # growth the factor above it; 0 turns either off (a 0-byte dump is always an anomaly).
    # A change smaller than min_bytes is none: a 2 KiB config dump that grows to 7 KiB.
    size_anomaly_history: Annotated[int, Field(ge=0, le=1000)] = 7
    size_anomaly_drop: Annotated[float, Field(ge=0, lt=1)] = 0.5
    size_anomaly_growth: Annotated[float, Field(ge=0, le=1_000_000)] = 3.0
    size_anomaly_min_bytes: Annotated[int, Field(ge=0)] = 1 * MiB
    # Storage you can see and budget (workers/monitoring/storage.py): a price per GiB-month
    # per storage class, `STANDARD=0.023,Hot=0.018` (empty: no cost estimate), and the
    # stored bytes a namespace may reach before `storage.over_budget` (0: no budget).
    storage_prices: str = ""
    storage_budget_bytes: Annotated[int, Field(ge=0)] = 0
    # Storage tiers that follow retention (workers/operations/tiers.py): the class a backup
    # kept only by a GFS rule moves to, `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE`; empty:
    # every object stays where it was written.
    storage_classes: str = ""
    # Reading an archived object (S3 GLACIER/DEEP_ARCHIVE, Azure Archive) first asks the
    # store to rehydrate it: S3's Glacier retrieval tier (Azure: Expedited is High
    # priority, the others Standard), the days S3 keeps the restored copy, and how long a
    # restore or drill waits for it.
    rehydration_tier: Literal["Standard", "Bulk", "Expedited"] = "Standard"
    rehydration_days: Annotated[int, Field(ge=1, le=365)] = 2
    rehydration_timeout: str = "48h"
    # The secondary store's own settings are these same variables prefixed with SECONDARY_.
    secondary_object_store_location_type: Literal["", StoreType] = ""
    secondary_copy_schedule: str = "*/15 * * * *"
    backfleet_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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

    @field_validator("backfleet_api_keys")
    @classmethod
    def _valid_api_keys(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    @field_validator("backfleet_api_keys_file")
    @classmethod
    def _valid_api_keys_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        raw = info.data.get("backfleet_api_keys")  # absent when it was itself invalid
        if raw is not None:
            configured_keys(raw.get_secret_value(), value)  # reads the file, checks repeats
        return value

    @field_validator("broker_url", "result_backend_url", "lock_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "redis+socket://")):
            raise ValueError("must be a redis://, rediss:// or redis+socket:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _catalog_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
            raise ValueError("must be a sqlite:///… or postgresql://… URL")
        return value

    @field_validator(
        "backup_part_size",
        "backup_volume_size",
        "storage_budget_bytes",
        "size_anomaly_min_bytes",
        mode="before",
    )
    @classmethod
    def _size_with_unit(cls, value: object) -> object:
        """`16MiB` as well as `16777216`; the range check follows on the bytes."""
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("backup_max_bandwidth")
    @classmethod
    def _valid_bandwidth(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("storage_prices")
    @classmethod
    def _valid_prices(cls, value: str) -> str:
        parse_storage_prices(value)
        return value

    @field_validator("storage_classes")
    @classmethod
    def _valid_storage_classes(cls, value: str) -> str:
        parse_storage_classes(value)
        return value

    @field_validator("object_store_local_file_mode")
    @classmethod
    def _valid_file_mode(cls, value: str) -> str:
        parse_file_mode(value)
        return value

    @field_validator(
        "backup_max_age",
        "backup_rto",
        "verify_every",
        "test_restore_every",
        "test_restore_period",
        "backup_hook_timeout",
        "rehydration_timeout",
    )
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("backfleet_ui_secret")
    @classmethod
    def _ui_secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("backup_signing_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        keys = [] if value is None else value.get_secret_value().split(",")
        if any(len(key.strip()) < 32 for key in keys):
            raise ValueError(
                "must be one key, or several comma-separated, of at least 32 characters "
                "each (e.g. `openssl rand -hex 32`)"
            )
        return value

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
    def _sse_needs_its_key(self) -> "Settings":
        if self.aws_s3_sse_kms_key_id and self.aws_s3_sse != "aws:kms":
            raise ValueError("AWS_S3_SSE_KMS_KEY_ID needs AWS_S3_SSE=aws:kms")
        if bool(self.aws_s3_object_lock_mode) != bool(self.aws_s3_object_lock_days):
            raise ValueError("AWS_S3_OBJECT_LOCK_MODE and AWS_S3_OBJECT_LOCK_DAYS go together")
        return self

    @model_validator(mode="after")
    def _retention_keeps_something(self) -> "Settings":
        # All counts at 0 would delete every backup that is not pinned or protected.
        names = [f"retention_keep_{p}" for p in ("hourly", "daily", "weekly", "monthly", "yearly")]
        if all(getattr(self, name) == 0 for name in names):
            listed = ", ".join(name.upper() for name in names)
            raise ValueError(f"{listed} are all 0: retention would keep nothing")
        return self

    @model_validator(mode="after")
    def _limits_fit_the_visibility_timeout(self) -> "Settings":
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
    def max_bandwidth(self) -> int:
        """BACKUP_MAX_BANDWIDTH in bytes per second; 0 means unlimited."""
        return parse_size(self.backup_max_bandwidth)

    @property
    def local_file_mode(self) -> int:
        """OBJECT_STORE_LOCAL_FILE_MODE as a number."""
        return parse_file_mode(self.object_store_local_file_mode)

    @property
    def prices(self) -> dict[str, float]:
        """STORAGE_PRICES: each storage class's price per GiB-month (empty: none set)."""
        return parse_storage_prices(self.storage_prices)

    @property
    def storage_class_map(self) -> dict[str, str]:
        """STORAGE_CLASSES: GFS rule -> the storage class its backups move to (empty: none)."""
        return parse_storage_classes(self.storage_classes)

    @property
    def rehydration_timeout_seconds(self) -> int:
        """REHYDRATION_TIMEOUT in seconds."""
        return parse_duration(self.rehydration_timeout)

    @property
    def max_age_seconds(self) -> int:
        """BACKUP_MAX_AGE in seconds."""
        return parse_duration(self.backup_max_age)

    @property
    def hook_timeout_seconds(self) -> int:
        """BACKUP_HOOK_TIMEOUT in seconds."""
        return parse_duration(self.backup_hook_timeout)

    @property
    def api_keys(self) -> list[ApiKey]:
        """The keys of BACKFLEET_API_KEYS and BACKFLEET_API_KEYS_FILE (read once per process)."""
        raw = self.backfleet_api_keys.get_secret_value()
        return list(configured_keys(raw, self.backfleet_api_keys_file))

    @property
    def results_url(self) -> str:
        return self.result_backend_url or self.broker_url

    @property
    def busy_retry_countdown(self) -> int:
        """Seconds a job waits before trying a busy namespace again.

        Redis holds a delayed task unacknowledged until its ETA, so the wait
        must stay well inside the visibility timeout, or it would be delivered twice.
        """
        return max(1, min(60, self.backup_lock_ttl, self.celery_visibility_timeout // 4))

    @property
    def locks_url(self) -> str:
        return self.lock_redis_url or self.broker_url


def describe_validation_error(error: ValidationError) -> str:
    """Name each bad variable and why, without echoing the value (it may be a secret)."""
    lines = []
    for item in error.errors():
        variable = str(item["loc"][0]).upper() if item["loc"] else "settings"
        reason = item["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {variable}: {reason}")
    return "; ".join(lines)


def load_settings() -> Settings:
    """Read the environment now; raise ConfigError naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_prefixed_settings(prefix: str) -> Settings:
    """Settings read from `<prefix><VARIABLE>` (the secondary store's); ConfigError if invalid."""
    try:
        return Settings(_env_prefix=prefix)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(f"{prefix}: {describe_validation_error(exc)}") from None


SECONDARY_PREFIX = "SECONDARY_"


def secondary_settings(settings: Settings) -> Settings | None:
    """The secondary store's settings (from SECONDARY_* variables), or None if there is none."""
    if not settings.secondary_object_store_location_type:
        return None
    return load_prefixed_settings(SECONDARY_PREFIX)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call get_settings.cache_clear())."""
    return load_settings()
