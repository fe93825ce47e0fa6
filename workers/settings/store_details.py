"""S3 and Azure details beyond the contract: addressing, checksums, encryption at rest,
Object Lock, the SHA-256 metadata copy, and Azure's other credentials."""

from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings


class StoreDetailsSettings(BaseSettings):
    """How Backfleet talks to an S3 or Azure store, beyond where it is."""

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

    @model_validator(mode="after")
    def _sse_needs_its_key(self) -> Self:
        if self.aws_s3_sse_kms_key_id and self.aws_s3_sse != "aws:kms":
            raise ValueError("AWS_S3_SSE_KMS_KEY_ID needs AWS_S3_SSE=aws:kms")
        if bool(self.aws_s3_object_lock_mode) != bool(self.aws_s3_object_lock_days):
            raise ValueError("AWS_S3_OBJECT_LOCK_MODE and AWS_S3_OBJECT_LOCK_DAYS go together")
        return self
