"""What the S3 store is told: the settings it reads, as one frozen value."""

from dataclasses import dataclass, field

from workers.settings import Settings
from workers.stores.sdk import secret_value


@dataclass(frozen=True)
class S3Config:
    bucket: str
    region: str = "us-west-2"
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    addressing_style: str = "auto"
    checksum: str = "CRC32"  # CRC32 | CRC32C | SHA256 | MD5 | none
    sse: str = ""  # "", AES256 or aws:kms
    sse_kms_key_id: str | None = None
    object_lock_mode: str = ""  # "", GOVERNANCE or COMPLIANCE
    object_lock_days: int = 0
    # Multipart objects get x-amz-meta-sha256 by a copy onto themselves (digests.py).
    sha256_metadata: bool = True
    # Reading a GLACIER/DEEP_ARCHIVE object: RestoreObject's retrieval tier and the days
    # S3 keeps the restored copy (REHYDRATION_TIER, REHYDRATION_DAYS).
    rehydration_tier: str = "Standard"
    rehydration_days: int = 2
    url_prefix: str = "https://s3.console.aws.amazon.com/s3/buckets/"
    url_suffix: str = "&prefix=%v/%v/&showversions=false"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Config":
        return cls(
            bucket=settings.aws_s3_bucket_name,
            region=settings.aws_s3_region,
            endpoint_url=settings.aws_s3_endpoint_url or None,
            access_key=secret_value(settings.aws_access_key),
            secret_key=secret_value(settings.aws_secret_key),
            addressing_style=settings.aws_s3_addressing_style,
            checksum=settings.aws_s3_checksum_algorithm,
            sse=settings.aws_s3_sse,
            sse_kms_key_id=settings.aws_s3_sse_kms_key_id,
            object_lock_mode=settings.aws_s3_object_lock_mode,
            object_lock_days=settings.aws_s3_object_lock_days,
            sha256_metadata=settings.aws_s3_sha256_metadata,
            rehydration_tier=settings.rehydration_tier,
            rehydration_days=settings.rehydration_days,
            url_prefix=settings.aws_s3_bucket_url_prefix,
            url_suffix=settings.aws_s3_bucket_url_suffix,
            max_pool_connections=settings.backup_upload_concurrency + 4,
        )

    @property
    def secrets(self) -> list[str]:
        return [self.secret_key] if self.secret_key else []

    @property
    def credentials_hint(self) -> str:
        if self.access_key:
            return "AWS_ACCESS_KEY / AWS_SECRET_KEY and the bucket's permissions"
        return "the AWS credential chain (or set AWS_ACCESS_KEY and AWS_SECRET_KEY)"

    @property
    def missing_bucket(self) -> str:
        return (
            f"bucket {self.bucket} does not exist (AWS_S3_BUCKET_NAME): "
            "run `backfleet store init` to create it"
        )
