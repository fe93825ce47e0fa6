"""What every write to S3 carries: a checksum the server verifies, encryption, retention.

Integrity: each part and small object carries a checksum the server verifies
(AWS_S3_CHECKSUM_ALGORITHM). We compute it and send it as a header ourselves, so
botocore never switches to aws-chunked trailers that many S3-compatible servers
reject (the client only sends checksums when asked: see client.py).
"""

import base64
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from isal import isal_zlib

from workers.errors import ConfigError
from workers.stores.s3.config import S3Config

FLEXIBLE_CHECKSUMS = ("CRC32", "CRC32C", "SHA256")
CHECKSUM_FIELDS = tuple(f"Checksum{name}" for name in FLEXIBLE_CHECKSUMS)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def crc32c(data: bytes | bytearray) -> bytes:
    """CRC32C of `data`; ConfigError naming the setting when awscrt is not installed."""
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
        digest = crc32c(data)
    elif algorithm == "SHA256":
        digest = hashlib.sha256(data).digest()
    else:
        return {}
    return {"ChecksumAlgorithm": algorithm, f"Checksum{algorithm}": _b64(digest)}


def checksum_algorithm(config: S3Config) -> str:
    """The algorithm writes use: AWS_S3_CHECKSUM_ALGORITHM, or MD5 where a lock needs one."""
    # S3 wants Content-MD5 or a checksum on every write to a locked object.
    if config.checksum == "none" and config.object_lock_mode:
        return "MD5"
    return config.checksum


def object_params(config: S3Config, clock: Callable[[], datetime]) -> dict[str, Any]:
    """Encryption and retention for a new object (multipart or not)."""
    params: dict[str, Any] = {}
    if config.sse:
        params["ServerSideEncryption"] = config.sse
    if config.sse_kms_key_id:
        params["SSEKMSKeyId"] = config.sse_kms_key_id
    if config.object_lock_mode:
        params["ObjectLockMode"] = config.object_lock_mode
        until = clock() + timedelta(days=config.object_lock_days)
        params["ObjectLockRetainUntilDate"] = until
    return params
