"""One typed Settings object read from the environment and validated at start.

Every field's environment variable is its name in upper case, and its description is
its documentation (docs/reference/settings.md is generated from them). Invalid values
stop the start with a message naming the variable and never echoing a secret.
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

    # Each description is the documentation of its variable: Markdown rendered into
    # docs/reference/settings.md by `make docs` (links are relative to that page).

    # --- the existing product's contract (DESIGN.md section 1) ---
    enable_regular_backups: bool = Field(
        default=False, description="beat schedules full backups of every namespace"
    )
    enable_user_events: bool = Field(
        default=False,
        description="record user events (every API call, `POST /userevents`, Backfleet's own "
        "operations) and ship them ([the audit trail](../concepts/audit-trail.md))",
    )
    uevents_schedule: str = Field(
        default="0 0 * * *", description="cron: push user events to the object store"
    )
    uevents_gc_schedule: str = Field(
        default="0 1 * * *", description="cron: purge shipped events from the catalog"
    )
    uevents_retention_days: Annotated[int, Field(ge=1, le=36500)] = Field(
        default=30,
        description="shipped events older than this many days are purged from the catalog "
        "(unshipped ones never)",
    )
    uevents_batch_events: Annotated[int, Field(ge=1, le=10_000_000)] = Field(
        default=100_000,
        description="events per shipping batch: one watermark step, and at most this many "
        "per object",
    )
    uevents_file_max_bytes: Annotated[int, Field(ge=64 * 1024, le=1024 * MiB)] = Field(
        default=64 * MiB,
        description="uncompressed bytes per shipped object (bounds the flush's memory)",
    )
    object_store_location_type: StoreType = Field(
        default="local",
        description="`local`, `s3` (AWS or any S3-compatible server) or `azure-blob-storage`",
    )
    object_store_location_local: Path = Field(
        default=Path("/backup"), description="directory of the local store (a PV mount)"
    )
    # Octal; folders get the matching x bits. Only read/write bits: 0600, 0640, 0660, 0644…
    object_store_local_file_mode: str = Field(
        default="0600",
        description="mode of the local store's files (octal, read/write bits only); folders "
        "it creates get the matching x bits (0600 → 0700), whatever the umask: backups are "
        "readable by the fleet's user only",
    )
    aws_s3_bucket_name: str = Field(default="athena-ondemand-backup", description="bucket")
    aws_s3_bucket_url_prefix: str = Field(
        default="https://s3.console.aws.amazon.com/s3/buckets/",
        description="console URL prefix used in `backupurl`",
    )
    aws_s3_bucket_url_suffix: str = Field(
        default="&prefix=%v/%v/&showversions=false",
        description="suffix; its two `%v` are namespace and timestamp",
    )
    aws_s3_region: str = Field(default="us-west-2", description="region")
    aws_access_key: SecretStr | None = Field(
        default=None,
        description="access key id (with `AWS_SECRET_KEY`; unset: the standard AWS chain)",
    )
    aws_secret_key: SecretStr | None = Field(
        default=None,
        description="secret access key (with `AWS_ACCESS_KEY`; unset: the standard AWS chain)",
    )
    aws_s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, SeaweedFS, Ceph…)"
    )
    azure_storage_account_name: str = Field(default="prophecyathenabackup", description="account")
    azure_storage_account_service_url: str = Field(
        default="https://prophecyathenabackup.blob.core.windows.net/",
        description="blob service URL",
    )
    azure_storage_container_name: str = Field(
        default="athena-ondemand-backup", description="container"
    )
    azure_storage_access_key: SecretStr | None = Field(default=None, description="shared key")

    # --- S3 and Azure details beyond the contract ---
    aws_s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="`auto`, `path` (most S3-compatible servers) or `virtual`"
    )
    aws_s3_checksum_algorithm: Literal["CRC32", "CRC32C", "SHA256", "MD5", "none"] = Field(
        default="CRC32",
        description="per-part checksum the server verifies: `CRC32`, `CRC32C`, `SHA256`, "
        "`MD5` (Content-MD5, for servers that reject the newer checksum headers) or `none`",
    )
    aws_s3_sse: Literal["", "AES256", "aws:kms"] = Field(
        default="", description="server-side encryption: empty, `AES256` or `aws:kms`"
    )
    aws_s3_sse_kms_key_id: str | None = Field(default=None, description="the KMS key for `aws:kms`")
    aws_s3_object_lock_mode: Literal["", "GOVERNANCE", "COMPLIANCE"] = Field(
        default="",
        description="S3 Object Lock retention on every object, `GOVERNANCE` or `COMPLIANCE` "
        "(with `AWS_S3_OBJECT_LOCK_DAYS`; empty: off); the bucket must have Object Lock "
        "enabled (`backfleet store init` does when these are set)",
    )
    aws_s3_object_lock_days: Annotated[int, Field(ge=0, le=36500)] = Field(
        default=0,
        description="days of that Object Lock retention (with `AWS_S3_OBJECT_LOCK_MODE`; 0: "
        "off). Retention extends the lock of every backup its policy keeps, to another "
        "`AWS_S3_OBJECT_LOCK_DAYS` from the pass, once less than half of them is left "
        "([Storage tiers](../concepts/storage.md#storage-tiers))",
    )
    # A multipart object's SHA-256 goes into its user metadata by a copy onto itself.
    aws_s3_sha256_metadata: bool = Field(
        default=True,
        description="a multipart object (every artifact) gets its SHA-256 in "
        "`x-amz-meta-sha256` by a server-side copy onto itself once uploaded ([why, and what "
        "it costs](../concepts/storage.md#the-sha-256-in-each-objects-metadata)); `false` "
        "skips the copy (manifests and other single-request objects carry it anyway). "
        "Consider `false` on a versioned or Object Lock bucket: the version the copy "
        "replaces is kept",
    )
    azure_storage_sas_token: SecretStr | None = Field(
        default=None, description="a SAS token instead of the shared key"
    )
    azure_storage_connection_string: SecretStr | None = Field(
        default=None,
        description="a connection string instead of the shared key or SAS token (wins when set)",
    )

    # --- Backfleet's own ---
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("BROKER_URL", "REDIS_URL"),
        description="Redis URL of the Celery broker: `redis://`, `rediss://` (TLS; `ssl_*` "
        "query options, `ssl_cert_reqs=required` or kombu's `CERT_REQUIRED`) or kombu's Unix "
        "socket form `redis+socket:///path?virtual_host=N`; every Redis client of the fleet "
        "(locks, checks, metrics, beat) reads all three",
    )
    result_backend_url: str | None = Field(
        default=None, description="Redis URL for task results (unset: the broker's)"
    )
    database_url: str = Field(
        default="sqlite:///./var/backfleet.db",
        description="the catalog: `sqlite:///path` or `postgresql://user[:pw]@host/db`",
    )
    backfleet_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="comma-separated `key`, `key:owner-email:customer` (every namespace, every "
        "role) or `key:owner-email:customer:namespaces:roles` (keys contain no `:`; see "
        "[Security model](../security.md#api-keys-and-scopes)); empty: every API call is "
        "refused",
    )
    backfleet_api_keys_file: Path | None = Field(
        default=None,
        description="a TOML file of SHA-256 hashes of keys with their scopes, so no key sits "
        "in the environment ([API keys and scopes](../security.md#api-keys-and-scopes)); read "
        "at start, used beside `BACKFLEET_API_KEYS`",
    )
    # Signs the catalog page's session cookies (api/session.py); unset: derived from the keys
    # of BACKFLEET_API_KEYS. Every API replica needs the same one.
    backfleet_ui_secret: SecretStr | None = Field(
        default=None,
        description="secret (32+ characters, e.g. `openssl rand -hex 32`) that signs the "
        "[catalog page](../api.md#the-catalog-page)'s session cookies; every API replica "
        "needs the same one. Unset: derived from the keys of `BACKFLEET_API_KEYS` (changing "
        "them signs everyone out); unset with only hashed keys (`BACKFLEET_API_KEYS_FILE`): "
        "the page's login form is off, the `Authorization` header still opens it",
    )
    # A restore from a namespace this fleet does not configure (another cluster's backups).
    backfleet_allow_unconfigured_source_namespaces: bool = Field(
        default=False,
        description="`ondemandrestore` (and `backfleet restore`) may read a `sourceNamespace` "
        "this fleet does not configure, e.g. another cluster's backups in a shared bucket; "
        "off, such a restore is 403 whatever the store holds",
    )
    backfleet_config: Path = Field(
        default=Path("./backfleet.toml"),
        description="[the services file](../configuration/services-file.md) (TOML)",
    )
    backfleet_namespace: str | None = Field(
        default=None,
        description="overrides the services file's `namespace` (unset: the file's, else `app`)",
    )
    regular_backup_schedule: str = Field(
        default="0 * * * *",
        description="cron (UTC) of the full backups `ENABLE_REGULAR_BACKUPS` schedules",
    )
    backfleet_api_host: str = Field(
        default="127.0.0.1", description="where `backfleet api` listens"
    )
    backfleet_api_port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8080, description="the port `backfleet api` listens on"
    )
    backup_part_size: Annotated[int, Field(ge=1 * MiB, le=5 * 1024 * MiB)] = Field(
        default=5 * MiB,
        description="bytes per uploaded part, e.g. `16MiB` or `16777216` (1 MiB to 5 GiB; S3 "
        "needs at least 5 MiB)",
    )
    backup_compression_level: Annotated[int, Field(ge=-7, le=22)] = Field(
        default=1, description="zstd level (-7 … 22); 1 is fast and compresses well"
    )
    backfleet_work_dir: Path | None = Field(
        default=None,
        description="scratch space for SQLite snapshots and staged command-source restores "
        "(unset: the system temp dir)",
    )
    backup_upload_concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        default=3,
        description="parts uploaded at once per artifact (S3, Azure); raise it for far-away stores",
    )
    backup_max_bandwidth: str = Field(
        default="0",
        description="upload limit per worker, e.g. `50MB`, `100MiB`; `0` is unlimited",
    )
    backup_retry_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=8,
        description="tries of each part or call on a transient error (timeouts, resets, "
        "500/503, SlowDown)",
    )
    backup_retry_base_delay: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.5,
        description="seconds before the first retry: exponential backoff with full jitter "
        "between tries, from this up to `BACKUP_RETRY_MAX_DELAY`",
    )
    backup_retry_max_delay: Annotated[float, Field(ge=0, le=600)] = Field(
        default=30.0, description="the longest backoff between two tries, in seconds"
    )
    backup_volume_size: Annotated[int, Field(ge=1 * MiB)] = Field(
        default=512 * MiB,
        description="a directory is split into volumes of about this many source bytes "
        "(e.g. `4GiB`), each its own artifact",
    )
    backup_volume_concurrency: Annotated[int, Field(ge=1, le=16)] = Field(
        default=2,
        description="a directory's volumes archived and uploaded at once (1-16); they share "
        "the `BACKUP_UPLOAD_CONCURRENCY` parts in flight, so memory grows only by a part "
        "buffer and a read chunk or two per volume. An S3 server may write each upload on "
        "one thread (rclone does), so two uploads keep more of it busy",
    )
    restore_direct_writes: bool = Field(
        default=True,
        description="a directory restore writes files of 1 MiB and more with `O_DIRECT`, "
        "past the page cache (buffered anyway where the filesystem refuses it); `false` "
        "writes them through the page cache, e.g. on a network filesystem where direct "
        "writes are slow",
    )
    backup_direct_reads: bool = Field(
        default=True,
        description="a directory backup reads the bytes of files of 1 MiB and more that are "
        "not in the page cache with `O_DIRECT`, so the backup neither fills the cache with "
        "pages nobody reads again nor evicts the host's; cached bytes are still read from "
        "the cache. Needs Linux 6.5+ (`cachestat`) to tell which is which: elsewhere, and "
        "where the filesystem refuses `O_DIRECT`, reads are buffered. `false` reads "
        "everything through the page cache",
    )
    backup_encryption_key: SecretStr | None = Field(
        default=None,
        description="encrypt every artifact to this age identity (`backfleet keygen`; "
        "[Encryption](../concepts/backups.md#encryption)); unset: no encryption",
    )
    backup_encryption_old_keys: SecretStr | None = Field(
        default=None,
        description="earlier keys, comma-separated, still used to restore older backups",
    )
    # Signs every manifest (HMAC-SHA256) when set; else the key comes from BACKUP_ENCRYPTION_KEY.
    # Comma-separated: the first signs, the others still verify (a rotation).
    backup_signing_key: SecretStr | None = Field(
        default=None,
        description="secret (32+ characters, e.g. `openssl rand -hex 32`) whose HKDF-derived "
        "key signs every manifest (HMAC-SHA256), so a fleet whose catalog never saw a backup "
        "can trust it ([Authenticated backups](../security.md#authenticated-backups)); "
        "comma-separated: the first signs, the others still verify (rotation). Unset: the "
        "MAC key derives from `BACKUP_ENCRYPTION_KEY` (and `_OLD_KEYS` verify); neither "
        "set: manifests are unsigned, and a backup found only in the store needs "
        "`allowUnsigned`",
    )
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
    # --- proving backups, keeping the right ones, saying when something is wrong ---
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
    # Storage you can see and budget (workers/monitoring/storage.py): a price per GiB-month
    # per storage class, `STANDARD=0.023,Hot=0.018` (empty: no cost estimate), and the
    # stored bytes a namespace may reach before `storage.over_budget` (0: no budget).
    storage_prices: str = Field(
        default="",
        description="the price of one GiB stored for a month in each storage class (tier), "
        "any currency, for the cost estimate of `backfleet storage` and "
        "`backfleet_storage_monthly_cost` ([Storage and cost](../concepts/storage.md#storage-"
        "and-cost)): comma-separated `CLASS=PRICE`, class names as the store spells them, "
        "e.g. `STANDARD=0.023,STANDARD_IA=0.0125,GLACIER_IR=0.004,DEEP_ARCHIVE=0.00099,"
        "Hot=0.018,Cool=0.01,Cold=0.0036,Archive=0.002`; a tier without a price has no cost "
        "(and is named); empty: no cost shown",
    )
    storage_budget_bytes: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="the stored bytes a namespace may reach before `storage.over_budget` is "
        "alerted, e.g. `500GiB`, `2TB` or bytes; a namespace's `storage_budget` in the "
        "services file wins; `0`: no budget",
    )
    # Storage tiers that follow retention (workers/operations/tiers.py): the class a backup
    # kept only by a GFS rule moves to, `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE`; empty:
    # every object stays where it was written.
    storage_classes: str = Field(
        default="",
        description="the storage class a backup moves to once only that GFS rule keeps it "
        "([Storage tiers](../concepts/storage.md#storage-tiers)): comma-separated "
        "`rule=CLASS`, rules among `hourly`, `daily`, `weekly`, `monthly`, `yearly`, classes "
        "the store's own: S3 `STANDARD_IA`, `GLACIER_IR`, `GLACIER`, `DEEP_ARCHIVE`; Azure "
        "`Cool`, `Cold`, `Archive`; e.g. `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE`. Checked "
        "when the fleet starts: a class the store does not have, a colder rule naming a "
        "warmer class, an archive class (`GLACIER`, `DEEP_ARCHIVE`, `Archive`) before the "
        "coldest one named, or any class on the local store, stops it with a message naming "
        "this setting. The primary store only; empty: every object stays where it was written",
    )
    # Reading an archived object (S3 GLACIER/DEEP_ARCHIVE, Azure Archive) first asks the
    # store to rehydrate it: S3's Glacier retrieval tier (Azure: Expedited is High
    # priority, the others Standard), the days S3 keeps the restored copy, and how long a
    # restore or drill waits for it.
    rehydration_tier: Literal["Standard", "Bulk", "Expedited"] = Field(
        default="Standard",
        description="how fast an archived object (S3 `GLACIER`/`DEEP_ARCHIVE`, Azure "
        "`Archive`) is brought back for a restore or a drill: S3's retrieval tier `Standard`, "
        "`Bulk` or `Expedited` (Deep Archive has no `Expedited`: `Standard` is asked); on "
        "Azure `Expedited` is High priority, the others Standard",
    )
    rehydration_days: Annotated[int, Field(ge=1, le=365)] = Field(
        default=2,
        description="the days S3 keeps the restored copy of an archived object (1-365), so a "
        "restore that gave up can be asked again without another retrieval",
    )
    rehydration_timeout: str = Field(
        default="48h",
        description="how long a restore or drill waits for its archived objects before it "
        "fails with a message saying so (the retrieval goes on): `48h`, `90m`, `2d` or "
        "seconds; never longer than nine tenths of `BACKUP_SOFT_TIME_LIMIT` ([Storage "
        "tiers](../concepts/storage.md#storage-tiers))",
    )
    # The secondary store's own settings are these same variables prefixed with SECONDARY_.
    secondary_object_store_location_type: Literal["", StoreType] = Field(
        default="",
        description="a secondary store (`local`, `s3`, `azure-blob-storage`) that gets a "
        "verified copy of every successful backup ([a second copy](../concepts/storage.md#a-"
        "second-copy)); empty: none. Its own settings are the variables above prefixed with "
        "`SECONDARY_` (`SECONDARY_AWS_S3_BUCKET_NAME`, `SECONDARY_AWS_ACCESS_KEY`, "
        "`SECONDARY_OBJECT_STORE_LOCATION_LOCAL`, `SECONDARY_RETENTION_KEEP_MONTHLY`…), with "
        "the same defaults",
    )
    secondary_copy_schedule: str = Field(
        default="*/15 * * * *",
        description="cron of the copy sweep to the secondary store (queue `maintenance`)",
    )
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
        "wal_slot_max_retained",
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
        "wal_rpo",
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
    def wal_rpo_seconds(self) -> int:
        """WAL_RPO in seconds."""
        return parse_duration(self.wal_rpo)

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
