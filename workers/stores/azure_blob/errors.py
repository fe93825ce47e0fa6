"""An Azure failure as a Backfleet error: transient or permanent, naming the setting to fix.

Never str() of a response error: Azure's auth errors quote the request's signature.
Transport failures are described by their first line, redacted (URLs may hold a SAS).
"""

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)

from workers.errors import (
    BackfleetError,
    ConfigError,
    NotFoundError,
    PermanentError,
    TransientError,
    UnreachableError,
)
from workers.redact import redact
from workers.stores.azure_blob.config import AzureConfig

TRANSIENT_CODES = frozenset(
    {"ServerBusy", "OperationTimedOut", "InternalError", "ContainerBeingDeleted"}
)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# The service found the body differs from the Content-MD5 (or CRC64) we sent: damaged
# on the way, and our copy is good, so sending it again is the cure.
DAMAGED_IN_TRANSIT = frozenset({"Md5Mismatch", "Crc64Mismatch"})
AZURITE_MD5_MISMATCH = "Provided contentMD5 doesn't match."  # Azurite's InvalidOperation


def error_code(exc: BaseException) -> str:
    """The service's error code (ContainerNotFound…), or "" when there is none."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def azure_error(exc: BaseException, *, what: str, config: AzureConfig) -> BackfleetError | None:
    """The Backfleet error for an SDK or network failure; None for anything else (a bug)."""
    if isinstance(exc, HttpResponseError):
        code = error_code(exc)
        status = exc.status_code
        # Never str(exc): Azure's auth errors quote the request's signature.
        detail = f"{what}: HTTP {status} {code}".strip() if status else f"{what}: {code}"
        if code == "ContainerNotFound":
            return ConfigError(f"{what}: {config.missing_container}")
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return ConfigError(f"{detail} (check {config.credentials_hint})")
        if code == "BlobArchived":
            return PermanentError(
                f"{detail} (the blob is in the Archive tier: it reads only once rehydrated, "
                "which restores and drills ask for themselves)"
            )
        if code == "BlobNotFound" or status == 404:
            return NotFoundError(detail)
        if status is None or status in TRANSIENT_STATUS or code in TRANSIENT_CODES:
            # No status: a broken body the SDK gave up re-reading.
            return TransientError(f"{detail} {_cause(exc, config)}".strip())
        if code in DAMAGED_IN_TRANSIT or (
            code == "InvalidOperation" and exc.reason == AZURITE_MD5_MISMATCH
        ):
            return TransientError(f"{detail} (the service refused bytes damaged in transit)")
        if isinstance(exc, ResourceModifiedError) or status == 412:
            return PermanentError(f"{what}: the blob changed meanwhile ({code})")
        return PermanentError(detail)
    if isinstance(exc, ServiceRequestError):  # no request was sent: the service is unreachable
        return UnreachableError(f"{what}: {type(exc).__name__}: {_cause(exc, config)}")
    if isinstance(exc, ServiceResponseError | OSError):
        return TransientError(f"{what}: {type(exc).__name__}: {_cause(exc, config)}")
    if isinstance(exc, AzureError):
        return PermanentError(f"{what}: {type(exc).__name__}: {_cause(exc, config)}")
    return None


def _cause(exc: BaseException, config: AzureConfig) -> str:
    """A short, secret-free description of a transport failure (URLs may hold a SAS)."""
    if isinstance(exc, HttpResponseError) and exc.status_code:
        return ""
    return redact(str(exc).split("\n", 1)[0], config.secrets)[:300]
