"""The variables of the existing product's contract (DESIGN.md section 1): user events,
the store's kind and where it is, the S3 bucket and the Azure account."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from workers.settings.parsing import MiB, StoreType, parse_file_mode


class ContractSettings(BaseSettings):
    """The contract's variables (their schedules are checked by Settings' cron check)."""

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

    @field_validator("object_store_local_file_mode")
    @classmethod
    def _valid_file_mode(cls, value: str) -> str:
        parse_file_mode(value)
        return value

    @property
    def local_file_mode(self) -> int:
        """OBJECT_STORE_LOCAL_FILE_MODE as a number."""
        return parse_file_mode(self.object_store_local_file_mode)
