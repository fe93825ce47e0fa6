"""S3Store: the ObjectStore for S3 — its capabilities, whole objects and the bucket.

Multipart uploads are in multipart.py, the client and calling it in connection.py.
"""

import hashlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, BinaryIO, ClassVar

from workers.errors import ConfigError, NotFoundError, PermanentError, UnreachableError
from workers.redact import redact
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.stores.base import SHA256_METADATA, ObjectInfo, check_key
from workers.stores.resuming import resuming_stream
from workers.stores.s3.config import S3Config
from workers.stores.s3.errors import s3_error
from workers.stores.s3.tiers import S3Tiers
from workers.stores.s3.write_params import checksum_algorithm, integrity_params, object_params

MiB = 1024 * 1024
GiB = 1024 * MiB


class S3Store(S3Tiers):
    kind: ClassVar[str] = "s3"
    max_parts: ClassVar[int] = 10_000
    min_part_size: ClassVar[int] = 5 * MiB  # all parts but the last
    max_part_size: ClassVar[int] = 5 * GiB
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = True  # a bucket may lock objects even when we set none
    default_storage_class: ClassVar[str] = "STANDARD"
    # Warm to cold (by price per GiB-month). Left out: INTELLIGENT_TIERING (S3 moves its
    # objects itself, so "colder" means nothing for it), ONEZONE_IA (one Availability
    # Zone: a backup kept for months should not be lost with one building; GLACIER_IR
    # costs less and keeps three), REDUCED_REDUNDANCY (deprecated), EXPRESS_ONEZONE.
    storage_classes: ClassVar[tuple[str, ...]] = (
        "STANDARD",
        "STANDARD_IA",
        "GLACIER_IR",
        "GLACIER",
        "DEEP_ARCHIVE",
    )
    archive_classes: ClassVar[frozenset[str]] = frozenset({"GLACIER", "DEEP_ARCHIVE"})
    min_storage_days: ClassVar[Mapping[str, int]] = {
        "STANDARD_IA": 30,
        "GLACIER_IR": 90,
        "GLACIER": 90,
        "DEEP_ARCHIVE": 180,
    }
    settings_fields: ClassVar[tuple[str, ...]] = (
        "aws_s3_bucket_name",
        "aws_s3_region",
        "aws_s3_endpoint_url",
        "aws_access_key",
        "aws_secret_key",
        "aws_s3_addressing_style",
        "aws_s3_checksum_algorithm",
        "aws_s3_sse",
        "aws_s3_sse_kms_key_id",
        "aws_s3_object_lock_mode",
        "aws_s3_object_lock_days",
        "aws_s3_sha256_metadata",
        "rehydration_tier",
        "rehydration_days",
        "aws_s3_bucket_url_prefix",
        "aws_s3_bucket_url_suffix",
        "backup_upload_concurrency",
    )
    secret_fields: ClassVar[tuple[str, ...]] = (
        "aws_access_key",
        "aws_secret_key",
        "aws_s3_endpoint_url",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Store":
        return cls(S3Config.from_settings(settings), policy=RetryPolicy.from_settings(settings))

    def locked_until(self, key: str) -> datetime | None:
        """When the object's Object Lock retention ends (a legal hold: never); None if unlocked."""
        head = self._head(key) or {}
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return datetime.max.replace(tzinfo=UTC)
        until = head.get("ObjectLockRetainUntilDate")
        return until.astimezone(UTC) if isinstance(until, datetime) else None

    # --- whole objects ---
    def put_object(self, key: str, data: bytes) -> None:
        check_key(key)
        client = self._client()
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "Body": data,
            "Metadata": {SHA256_METADATA: hashlib.sha256(data).hexdigest()},
            **object_params(self.config, self._clock),
            **integrity_params(checksum_algorithm(self.config), data),
        }
        self._call(f"write of {self._where(key)}", lambda: client.put_object(**params))

    def _get(self, key: str, offset: int, etag: str | None) -> Any:
        params: dict[str, Any] = {"Bucket": self.config.bucket, "Key": key}
        if offset:
            params["Range"] = f"bytes={offset}-"
        if etag:
            params["IfMatch"] = etag  # never splice two versions of an object together
        return self._client().get_object(**params)

    def open_read(self, key: str) -> BinaryIO:
        check_key(key)
        what = f"read of {self._where(key)}"
        first = self._call(what, lambda: self._get(key, 0, None))
        etag = str(first.get("ETag") or "") or None

        def open_range(offset: int) -> _Body:
            answer = self._once(what, lambda: self._get(key, offset, etag))
            return _Body(answer["Body"], what, self.config)

        return resuming_stream(
            open_range,
            size=int(first["ContentLength"]),
            policy=self.policy,
            what=what,
            first=_Body(first["Body"], what, self.config),
        )

    def exists(self, key: str) -> bool:
        return self._head(check_key(key)) is not None

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        client = self._client()
        token: dict[str, str] = {}
        while True:
            page_of = partial(
                client.list_objects_v2, Bucket=self.config.bucket, Prefix=prefix, **token
            )
            page = self._call(f"list of {self._where(prefix)}", page_of)
            for item in page.get("Contents", []):  # S3 lists in key (UTF-8 byte) order
                modified = item.get("LastModified")
                yield ObjectInfo(
                    key=str(item["Key"]),
                    size=int(item["Size"]),
                    modified=modified.astimezone(UTC) if isinstance(modified, datetime) else None,
                )
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": str(page["NextContinuationToken"])}

    def delete(self, key: str) -> None:
        check_key(key)
        client = self._client()
        self._call(
            f"delete of {self._where(key)}",
            lambda: client.delete_object(Bucket=self.config.bucket, Key=key),
        )

    def url_for(self, namespace: str, timestamp: str) -> str:
        cfg = self.config
        suffix = cfg.url_suffix.replace("%v", namespace, 1).replace("%v", timestamp, 1)
        return f"{cfg.url_prefix}{cfg.bucket}?region={cfg.region}{suffix}"

    # --- the bucket ---
    def _bucket_exists(self) -> bool:
        """One HEAD, no retries (readiness must answer fast); errors name the setting."""
        what = f"check of bucket {self.config.bucket}"
        client = self._client()  # loads the SDK
        from botocore import exceptions as boto_errors

        try:
            client.head_bucket(Bucket=self.config.bucket)
        except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError):
            where = redact(
                self.config.endpoint_url or f"S3 in {self.config.region}", self.config.secrets
            )
            raise UnreachableError(
                f"{what}: cannot connect to {where} (AWS_S3_ENDPOINT_URL, AWS_S3_REGION)"
            ) from None
        except Exception as exc:
            mapped = s3_error(exc, what=what, config=self.config)
            if isinstance(mapped, NotFoundError):  # HEAD has no body: a bare 404 is the bucket
                return False
            if mapped is None:
                raise
            raise mapped from None
        return True

    def check(self) -> None:
        if not self._bucket_exists():
            raise ConfigError(self.config.missing_bucket)

    def init(self) -> None:
        if self._bucket_exists():
            return
        cfg = self.config
        params: dict[str, Any] = {"Bucket": cfg.bucket}
        if cfg.region != "us-east-1":  # the one region that refuses a LocationConstraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        if cfg.object_lock_mode:
            params["ObjectLockEnabledForBucket"] = True
        client = self._client()
        try:
            self._call(f"creation of bucket {cfg.bucket}", lambda: client.create_bucket(**params))
        except PermanentError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise


class _Body:
    """A GET's body whose network failures surface as TransientError (for the resumer)."""

    def __init__(self, body: Any, what: str, config: S3Config) -> None:
        self._body, self._what, self._config = body, what, config

    def read(self, size: int = -1, /) -> bytes:
        try:
            return bytes(self._body.read(None if size < 0 else size))
        except Exception as exc:
            mapped = s3_error(exc, what=self._what, config=self._config)
            if mapped is None:
                raise
            raise mapped from None

    def close(self) -> None:
        self._body.close()
