"""AWS S3 and S3-compatible servers (MinIO, SeaweedFS, Ceph, rclone) through boto3.

There is one retry layer, workers.retry: botocore's own retries are off. The
pipeline retries each upload_part; this store retries its other calls. Every
SDK error becomes a TransientError or a PermanentError whose message names the
setting to fix and never carries a secret (only the error code and message of a
response are used, never its headers or signature details).

Integrity: each part and small object carries a checksum the server verifies
(AWS_S3_CHECKSUM_ALGORITHM). We compute it and send it as a header ourselves, so
botocore never switches to aws-chunked trailers that many S3-compatible servers
reject; the client only sends checksums when asked ("when_required").
"""

import base64
import contextlib
import hashlib
import http.client
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, BinaryIO, ClassVar, TypeVar

import boto3
import urllib3.exceptions
from botocore import exceptions as boto_errors
from botocore.config import Config
from isal import isal_zlib

from workers.errors import (
    BackfleetError,
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from workers.redact import redact
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.stores.base import ObjectInfo, PendingUpload, UploadedPart, check_key
from workers.stores.per_process import PerProcess
from workers.stores.resuming import resuming_stream
from workers.stores.sdk import call_once, call_retried, secret_value

T = TypeVar("T")
MiB = 1024 * 1024
GiB = 1024 * MiB

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "OperationAborted",  # a conflicting bucket operation is in progress
    }
)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# The server found the body it received differs from the checksum we sent: the bytes
# were damaged on the way. Our copy is good, so sending it again is the cure.
DAMAGED_IN_TRANSIT = frozenset({"BadDigest", "XAmzContentSHA256Mismatch"})
FLEXIBLE_CHECKSUMS = ("CRC32", "CRC32C", "SHA256")
CHECKSUM_FIELDS = tuple(f"Checksum{name}" for name in FLEXIBLE_CHECKSUMS)


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


# --- errors ---------------------------------------------------------------------------


def s3_error(exc: BaseException, *, what: str, config: S3Config) -> BackfleetError | None:
    """The Backfleet error for an SDK or network failure; None for anything else (a bug)."""
    if isinstance(exc, boto_errors.ClientError):
        return _client_error(exc, what=what, config=config)
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return ConfigError(f"{what}: no usable AWS credentials; set {config.credentials_hint}")
    if isinstance(exc, boto_errors.MissingDependencyException):
        return ConfigError(f"{what}: AWS_S3_CHECKSUM_ALGORITHM needs botocore[crt]")
    if isinstance(exc, boto_errors.EndpointConnectionError):
        where = config.endpoint_url or f"S3 in {config.region}"
        return TransientError(
            f"{what}: cannot connect to {redact(where, config.secrets)} "
            "(AWS_S3_ENDPOINT_URL, AWS_S3_REGION)"
        )
    network = (
        boto_errors.HTTPClientError,
        boto_errors.ConnectionError,
        boto_errors.IncompleteReadError,
        boto_errors.ChecksumError,
        boto_errors.FlexibleChecksumError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        OSError,
    )
    if isinstance(exc, network):
        detail = redact(str(exc), config.secrets)[:300]
        return TransientError(f"{what}: {type(exc).__name__}: {detail}")
    if isinstance(exc, boto_errors.BotoCoreError):
        return PermanentError(f"{what}: {redact(str(exc), config.secrets)[:300]}")
    return None


def _client_error(exc: Any, *, what: str, config: S3Config) -> BackfleetError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    # Only the code and message: a response's other fields may echo the signed request.
    detail = redact(f"{what}: {code or status} {error.get('Message', '')}".strip(), config.secrets)
    if code == "NoSuchBucket":
        return ConfigError(f"{what}: {config.missing_bucket}")
    if code == "InvalidAccessKeyId":
        return ConfigError(f"{detail} (check AWS_ACCESS_KEY)")
    if code == "SignatureDoesNotMatch":
        return ConfigError(f"{detail} (check AWS_SECRET_KEY)")
    if code == "RequestTimeTooSkewed":  # a 403 that no key change would fix
        return ConfigError(f"{detail} (this machine's clock is off: sync it with NTP)")
    if code.startswith("KMS."):
        return ConfigError(f"{detail} (check AWS_S3_SSE_KMS_KEY_ID and its key policy)")
    if code in ("AccessDenied", "AllAccessDisabled", "InvalidToken", "ExpiredToken") or (
        status == 403
    ):
        return ConfigError(f"{detail} (check {config.credentials_hint})")
    if code == "NoSuchUpload":
        return NotFoundError(f"{detail} (the server no longer holds this multipart upload)")
    if code in ("NoSuchKey", "NotFound") or status == 404:
        return NotFoundError(detail)
    if code in TRANSIENT_CODES or code.startswith("Throttl") or status in TRANSIENT_STATUS:
        return TransientError(detail)
    if code in DAMAGED_IN_TRANSIT:
        return TransientError(f"{detail} (the server refused bytes damaged in transit)")
    if code == "PreconditionFailed" or status == 412:
        return PermanentError(f"{what}: the object changed while it was being read")
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed") or status == 301:
        return ConfigError(f"{detail} (check AWS_S3_REGION)")
    if code == "InvalidBucketName":
        return ConfigError(f"{detail} (check AWS_S3_BUCKET_NAME)")
    return PermanentError(detail)


# --- integrity and retention parameters ----------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _crc32c(data: bytes | bytearray) -> bytes:
    try:
        from awscrt import checksums  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            "AWS_S3_CHECKSUM_ALGORITHM=CRC32C needs the awscrt package "
            "(pip install 'botocore[crt]'); or choose CRC32 or SHA256"
        ) from None
    return int(checksums.crc32c(data)).to_bytes(4, "big")


def integrity_params(algorithm: str, data: bytes | bytearray) -> dict[str, str]:
    """Request parameters that make the server verify `data` with `algorithm`."""
    if algorithm == "MD5":
        return {"ContentMD5": _b64(hashlib.md5(data, usedforsecurity=False).digest())}
    if algorithm == "CRC32":
        # ISA-L's CRC32 (the zlib polynomial): ~17 GB/s here against zlib's ~2.3.
        digest = isal_zlib.crc32(data).to_bytes(4, "big")
    elif algorithm == "CRC32C":
        digest = _crc32c(data)
    elif algorithm == "SHA256":
        digest = hashlib.sha256(data).digest()
    else:
        return {}
    return {"ChecksumAlgorithm": algorithm, f"Checksum{algorithm}": _b64(digest)}


def _etag(value: str) -> str:
    return value.strip().strip('"')


def part_mismatches(parts: Sequence[UploadedPart], listed: dict[int, dict[str, Any]]) -> list[str]:
    """How the server's parts differ from the recorded ones (extra server parts are fine)."""
    problems = []
    for part in parts:
        held = listed.get(part.number)
        if held is None:
            problems.append(f"part {part.number} is missing")
        elif int(held.get("Size", -1)) != part.size:
            problems.append(f"part {part.number} holds {held.get('Size')} bytes, not {part.size}")
        elif part.etag and _etag(str(held.get("ETag", ""))) != _etag(part.etag):
            problems.append(f"part {part.number} has another ETag")
    return problems


# --- the store ------------------------------------------------------------------------

_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _session() -> Any:
    """One boto3 session per process: it caches the service model, so clients come cheap."""
    pid = os.getpid()
    if pid not in _SESSIONS:
        _SESSIONS.clear()  # a forked child must not reuse its parent's
        _SESSIONS[pid] = boto3.session.Session()
    return _SESSIONS[pid]


class S3Store:
    kind: ClassVar[str] = "s3"
    max_parts: ClassVar[int] = 10_000
    min_part_size: ClassVar[int] = 5 * MiB  # all parts but the last
    max_part_size: ClassVar[int] = 5 * GiB
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = True  # a bucket may lock objects even when we set none
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
        "aws_s3_bucket_url_prefix",
        "aws_s3_bucket_url_suffix",
        "backup_upload_concurrency",
    )
    secret_fields: ClassVar[tuple[str, ...]] = (
        "aws_access_key",
        "aws_secret_key",
        "aws_s3_endpoint_url",
    )

    def __init__(
        self,
        config: S3Config,
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._s3: PerProcess[Any] = PerProcess(self._make_client)

    @classmethod
    def from_settings(cls, settings: Settings) -> "S3Store":
        return cls(S3Config.from_settings(settings), policy=RetryPolicy.from_settings(settings))

    # --- the client: made on first use, again after a fork ---
    def _client(self) -> Any:
        return self._s3.get()

    def _make_client(self) -> Any:
        cfg = self.config
        if cfg.checksum == "CRC32C":
            _crc32c(b"")  # refuse now, not on the first part
        options: dict[str, Any] = {
            "region_name": cfg.region,
            "config": Config(
                retries={"total_max_attempts": 1},  # workers.retry is the one retry layer
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.read_timeout,
                max_pool_connections=cfg.max_pool_connections,
                # No SigV4 hash of every body (botocore does one over plain HTTP): the
                # checksum header already lets the server check each part.
                s3={"addressing_style": cfg.addressing_style, "payload_signing_enabled": False},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        }
        if cfg.endpoint_url:
            options["endpoint_url"] = cfg.endpoint_url
        if cfg.access_key and cfg.secret_key:
            options["aws_access_key_id"] = cfg.access_key
            options["aws_secret_access_key"] = cfg.secret_key
        elif cfg.access_key or cfg.secret_key:
            raise ConfigError("AWS_ACCESS_KEY and AWS_SECRET_KEY go together: set both or neither")
        # Neither key: boto3's standard chain (environment, profile, IMDS, IRSA…) decides.
        try:
            with _SESSION_LOCK:  # a session is not thread-safe; its clients are
                return _session().client("s3", **options)
        except ValueError as exc:  # a malformed endpoint URL
            raise ConfigError(f"AWS_S3_ENDPOINT_URL is not usable: {exc}") from None

    # --- calling the SDK ---
    def _once(self, what: str, operation: Callable[[], T]) -> T:
        return call_once(what, operation, self._map_error)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        return call_retried(what, operation, self._map_error, self.policy)

    def _map_error(self, exc: BaseException, what: str) -> BackfleetError | None:
        return s3_error(exc, what=what, config=self.config)

    def _where(self, key: str) -> str:
        return f"s3://{self.config.bucket}/{key}"

    def _object_params(self) -> dict[str, Any]:
        """Encryption and retention for a new object (multipart or not)."""
        cfg = self.config
        params: dict[str, Any] = {}
        if cfg.sse:
            params["ServerSideEncryption"] = cfg.sse
        if cfg.sse_kms_key_id:
            params["SSEKMSKeyId"] = cfg.sse_kms_key_id
        if cfg.object_lock_mode:
            params["ObjectLockMode"] = cfg.object_lock_mode
            until = self._clock() + timedelta(days=cfg.object_lock_days)
            params["ObjectLockRetainUntilDate"] = until
        return params

    @property
    def _checksum(self) -> str:
        # S3 wants Content-MD5 or a checksum on every write to a locked object.
        if self.config.checksum == "none" and self.config.object_lock_mode:
            return "MD5"
        return self.config.checksum

    # --- multipart uploads ---
    def create_upload(self, key: str) -> str:
        check_key(key)
        params = {"Bucket": self.config.bucket, "Key": key, **self._object_params()}
        if self._checksum in FLEXIBLE_CHECKSUMS:
            params["ChecksumAlgorithm"] = self._checksum  # S3 then expects it on every part
        client = self._client()
        done = self._call(
            f"start of upload to {self._where(key)}",
            lambda: client.create_multipart_upload(**params),
        )
        return str(done["UploadId"])

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        if not 1 <= number <= self.max_parts:
            raise PermanentError(f"part number {number} is outside 1..{self.max_parts}")
        if len(data) > self.max_part_size:
            raise PermanentError(f"part {number} of {key} is larger than S3 allows")
        client = self._client()
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": data,
            **integrity_params(self._checksum, data),
        }
        # Not retried here: the pipeline retries each part with workers.retry.
        done = self._once(
            f"upload of part {number} of {self._where(key)}", lambda: client.upload_part(**params)
        )
        return UploadedPart(number=number, size=len(data), etag=str(done["ETag"]))

    def _list_parts(self, key: str, upload_id: str) -> dict[int, dict[str, Any]] | None:
        """The server's parts by number; None when the upload is gone."""
        client = self._client()
        found: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            page_of = partial(
                client.list_parts,
                Bucket=self.config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
            try:
                page = self._call(f"list of the parts of {self._where(key)}", page_of)
            except NotFoundError:
                return None
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                return found
            marker = int(page["NextPartNumberMarker"])

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if not ordered or len(set(numbers)) != len(numbers):
            raise PermanentError(f"upload of {key}: parts must be distinct and at least one")
        total = sum(part.size for part in ordered)
        listed = self._list_parts(key, upload_id)
        if listed is None:
            if self._holds(key, total):  # our complete already went through
                return
            raise PermanentError(f"upload of {self._where(key)} no longer exists")
        if problems := part_mismatches(ordered, listed):
            raise PermanentError(f"upload of {self._where(key)}: {'; '.join(problems)}")
        manifest = []
        for part in ordered:
            held = listed[part.number]
            entry = {"PartNumber": part.number, "ETag": held["ETag"]}
            entry.update({name: held[name] for name in CHECKSUM_FIELDS if held.get(name)})
            manifest.append(entry)
        client = self._client()
        try:
            self._call(
                f"completion of {self._where(key)}",
                lambda: client.complete_multipart_upload(
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": manifest},
                ),
            )
        except NotFoundError:
            # A retry after a lost answer finds the upload completed: not an error.
            if not self._holds(key, total):
                raise

    def _head(self, key: str) -> dict[str, Any] | None:
        client = self._client()
        try:
            return dict(
                self._call(
                    f"check of {self._where(key)}",
                    lambda: client.head_object(Bucket=self.config.bucket, Key=key),
                )
            )
        except NotFoundError:
            return None

    def locked_until(self, key: str) -> datetime | None:
        """When the object's Object Lock retention ends (a legal hold: never); None if unlocked."""
        head = self._head(key) or {}
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            return datetime.max.replace(tzinfo=UTC)
        until = head.get("ObjectLockRetainUntilDate")
        return until.astimezone(UTC) if isinstance(until, datetime) else None

    def _holds(self, key: str, size: int) -> bool:
        head = self._head(key)
        return head is not None and int(head.get("ContentLength", -1)) == size

    def abort_upload(self, key: str, upload_id: str) -> None:
        client = self._client()
        with contextlib.suppress(NotFoundError):  # already gone
            self._call(
                f"abort of the upload to {self._where(key)}",
                lambda: client.abort_multipart_upload(
                    Bucket=self.config.bucket, Key=key, UploadId=upload_id
                ),
            )

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        # Parts the server holds beyond these (in flight when a worker died) do no harm:
        # the next ones overwrite their numbers and complete lists the parts it keeps.
        listed = self._list_parts(key, upload_id)
        return listed is not None and not part_mismatches(parts, listed)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        client = self._client()
        markers: dict[str, str] = {}
        while True:
            page_of = partial(
                client.list_multipart_uploads, Bucket=self.config.bucket, Prefix=prefix, **markers
            )
            try:
                page = self._call(f"list of the uploads under {self._where(prefix)}", page_of)
            except NotFoundError:
                return  # rclone's answer for a bucket that never had an upload
            for upload in page.get("Uploads", []):
                started = upload.get("Initiated")
                yield PendingUpload(
                    key=str(upload["Key"]),
                    upload_id=str(upload["UploadId"]),
                    started=started.astimezone(UTC) if isinstance(started, datetime) else None,
                )
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": str(page.get("NextKeyMarker", "")),
                "UploadIdMarker": str(page.get("NextUploadIdMarker", "")),
            }

    # --- whole objects ---
    def put_object(self, key: str, data: bytes) -> None:
        check_key(key)
        client = self._client()
        params = {
            "Bucket": self.config.bucket,
            "Key": key,
            "Body": data,
            **self._object_params(),
            **integrity_params(self._checksum, data),
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
        try:
            self._client().head_bucket(Bucket=self.config.bucket)
        except (boto_errors.EndpointConnectionError, boto_errors.ConnectTimeoutError):
            where = redact(
                self.config.endpoint_url or f"S3 in {self.config.region}", self.config.secrets
            )
            raise ConfigError(
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
