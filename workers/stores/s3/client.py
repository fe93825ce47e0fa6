"""Building the boto3 client: endpoint, addressing style, timeouts, credentials.

There is one retry layer, workers.retry: botocore's own retries are off. Checksums
are sent only when asked ("when_required"): write_params.py puts them in headers.
boto3 is imported when the first client is made, not with this module: a process
that only builds the fleet (the CLI queueing a backup) never loads it (~0.2 s).
"""

import os
import threading
from typing import Any

from workers.errors import ConfigError
from workers.stores.s3.config import S3Config
from workers.stores.s3.write_params import crc32c

_SESSION_LOCK = threading.Lock()
_SESSIONS: dict[int, Any] = {}


def _session() -> Any:
    """One boto3 session per process: it caches the service model, so clients come cheap."""
    pid = os.getpid()
    if pid not in _SESSIONS:
        import boto3.session

        _SESSIONS.clear()  # a forked child must not reuse its parent's
        _SESSIONS[pid] = boto3.session.Session()
    return _SESSIONS[pid]


def make_client(cfg: S3Config) -> Any:
    """A boto3 S3 client for `cfg`; ConfigError naming the setting when it cannot be made."""
    from botocore.config import Config

    if cfg.checksum == "CRC32C":
        crc32c(b"")  # refuse now, not on the first part
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
