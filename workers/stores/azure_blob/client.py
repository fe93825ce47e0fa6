"""Building the BlobServiceClient: credentials (key, SAS or connection string), timeouts.

There is one retry layer, workers.retry: the SDK's retry policy is off
(retry_total=0). Downloads are asked for in CHUNK-sized ranges.
"""

from typing import Any

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import BlobServiceClient

from workers.errors import ConfigError
from workers.redact import redact
from workers.stores.azure_blob.config import AzureConfig

MiB = 1024 * 1024
CHUNK = 4 * MiB  # per download request: bounds memory and allows a per-range MD5


def make_service_client(cfg: AzureConfig) -> BlobServiceClient:
    """A client for `cfg`'s account; ConfigError naming the setting when it cannot be made."""
    options: dict[str, Any] = {
        "retry_total": 0,  # workers.retry is the one retry layer
        "connection_timeout": cfg.connect_timeout,
        "read_timeout": cfg.read_timeout,
        "max_single_get_size": CHUNK,
        "max_chunk_get_size": CHUNK,
    }
    try:
        if cfg.connection_string:
            return BlobServiceClient.from_connection_string(cfg.connection_string, **options)
        credential: AzureNamedKeyCredential | AzureSasCredential
        if cfg.access_key:
            credential = AzureNamedKeyCredential(cfg.account_name, cfg.access_key)
        elif cfg.sas_token:
            credential = AzureSasCredential(cfg.sas_token.lstrip("?"))
        else:
            raise ConfigError(
                "no Azure credentials: set AZURE_STORAGE_ACCESS_KEY (with "
                "AZURE_STORAGE_ACCOUNT_NAME), AZURE_STORAGE_SAS_TOKEN or "
                "AZURE_STORAGE_CONNECTION_STRING"
            )
        return BlobServiceClient(cfg.service_url, credential=credential, **options)
    except ValueError as exc:  # a malformed URL or connection string
        setting = (
            "AZURE_STORAGE_CONNECTION_STRING"
            if cfg.connection_string
            else "AZURE_STORAGE_ACCOUNT_SERVICE_URL"
        )
        raise ConfigError(f"{setting} is not usable: {redact(str(exc), cfg.secrets)}") from None
