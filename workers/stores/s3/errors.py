"""An S3 failure as a Backfleet error: transient or permanent, naming the setting to fix.

Only the error code and message of a response are used, never its headers or
signature details, and every message is redacted: none carries a secret.
"""

import http.client
from typing import Any

from workers.errors import (
    BackfleetError,
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    UnreachableError,
)
from workers.redact import redact
from workers.stores.s3.config import S3Config

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


def s3_error(exc: BaseException, *, what: str, config: S3Config) -> BackfleetError | None:
    """The Backfleet error for an SDK or network failure; None for anything else (a bug)."""
    # Here, not at the top: the SDK is loaded only by a process that talks to S3.
    import urllib3.exceptions
    from botocore import exceptions as boto_errors

    if isinstance(exc, boto_errors.ClientError):
        return _client_error(exc, what=what, config=config)
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return ConfigError(f"{what}: no usable AWS credentials; set {config.credentials_hint}")
    if isinstance(exc, boto_errors.MissingDependencyException):
        return ConfigError(f"{what}: AWS_S3_CHECKSUM_ALGORITHM needs botocore[crt]")
    if isinstance(exc, boto_errors.EndpointConnectionError | boto_errors.ConnectTimeoutError):
        # Unreachable (a TransientError, so retried alike): the command line's exit 3.
        where = config.endpoint_url or f"S3 in {config.region}"
        return UnreachableError(
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
    if code == "InvalidObjectState":  # a 403 too: a GLACIER/DEEP_ARCHIVE object, unrestored
        return PermanentError(
            f"{detail} (the object is archived: it reads only once restored, "
            "which restores and drills ask for themselves)"
        )
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
