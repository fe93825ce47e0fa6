"""How bytes move: part size, compression, concurrency, bandwidth, retries, volumes,
direct I/O, encryption and manifest signing keys."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from workers.settings.parsing import MiB, parse_size


class TransferSettings(BaseSettings):
    """A backup's and a restore's data path (sizes are read by Settings' size check)."""

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

    @field_validator("backup_max_bandwidth")
    @classmethod
    def _valid_bandwidth(cls, value: str) -> str:
        parse_size(value)
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

    @property
    def max_bandwidth(self) -> int:
        """BACKUP_MAX_BANDWIDTH in bytes per second; 0 means unlimited."""
        return parse_size(self.backup_max_bandwidth)
