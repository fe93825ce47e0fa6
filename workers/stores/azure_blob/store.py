"""AzureBlobStore: the ObjectStore for Azure Blob Storage (and Azurite) — its
capabilities, whole objects and the container.

Block uploads are in multipart.py, the client and calling it in connection.py.
Downloads go through the resuming reader in CHUNK-sized ranges. (The SDK has a
hard-coded loop that re-reads a chunk up to three times after some body errors,
IncompleteRead and decode errors; a reset connection is not one of them and reaches
the resuming reader at once.)
"""

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import BinaryIO, ClassVar

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError

from workers.errors import ConfigError, NotFoundError, PermanentError, UnreachableError
from workers.redact import redact
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.stores.azure_blob.config import AzureConfig
from workers.stores.azure_blob.errors import azure_error, error_code
from workers.stores.azure_blob.tiers import AzureTiers
from workers.stores.base import SHA256_METADATA, ObjectInfo, check_key
from workers.stores.resuming import resuming_stream

MiB = 1024 * 1024


class AzureBlobStore(AzureTiers):
    kind: ClassVar[str] = "azure-blob-storage"
    max_parts: ClassVar[int] = 50_000  # committed blocks per blob
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 4000 * MiB  # per staged block
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = False
    # Blobs take the account's default access tier (Hot unless it is set to Cool).
    default_storage_class: ClassVar[str] = "Hot"
    storage_classes: ClassVar[tuple[str, ...]] = ("Hot", "Cool", "Cold", "Archive")
    archive_classes: ClassVar[frozenset[str]] = frozenset({"Archive"})
    min_storage_days: ClassVar[Mapping[str, int]] = {"Cool": 30, "Cold": 90, "Archive": 180}
    settings_fields: ClassVar[tuple[str, ...]] = (
        "azure_storage_container_name",
        "azure_storage_account_service_url",
        "azure_storage_account_name",
        "azure_storage_access_key",
        "azure_storage_sas_token",
        "azure_storage_connection_string",
        "rehydration_tier",
    )
    secret_fields: ClassVar[tuple[str, ...]] = (
        "azure_storage_account_service_url",
        "azure_storage_access_key",
        "azure_storage_sas_token",
        "azure_storage_connection_string",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> "AzureBlobStore":
        return cls(AzureConfig.from_settings(settings), policy=RetryPolicy.from_settings(settings))

    # --- whole objects ---
    def put_object(self, key: str, data: bytes) -> None:
        check_key(key)
        blob = self._blob(key)
        metadata = {SHA256_METADATA: hashlib.sha256(data).hexdigest()}
        self._call(
            f"write of {self._where(key)}",
            lambda: blob.upload_blob(
                data,
                length=len(data),
                overwrite=True,
                validate_content=True,
                max_concurrency=1,
                metadata=metadata,
            ),
        )

    def open_read(self, key: str) -> BinaryIO:
        check_key(key)
        blob = self._blob(key)
        what = f"read of {self._where(key)}"
        first = self._call(
            what, lambda: blob.download_blob(max_concurrency=1, validate_content=True)
        )
        etag = first.properties.etag

        def open_range(offset: int) -> _Chunks:
            again = self._once(
                what,
                lambda: blob.download_blob(
                    offset=offset,
                    max_concurrency=1,
                    validate_content=True,
                    etag=etag,  # never splice two versions of a blob together
                    match_condition=MatchConditions.IfNotModified,
                ),
            )
            return _Chunks(again.chunks(), what, self.config)

        return resuming_stream(
            open_range,
            size=int(first.size),
            policy=self.policy,
            what=what,
            first=_Chunks(first.chunks(), what, self.config),
        )

    def exists(self, key: str) -> bool:
        return self._committed(check_key(key))

    def stored_sha256(self, key: str) -> str | None:
        blob = self._blob(check_key(key))
        properties = self._call(f"check of {self._where(key)}", blob.get_blob_properties)
        # Metadata names are case-insensitive (HTTP headers): any case is the same name.
        found = {name.lower(): value for name, value in (properties.metadata or {}).items()}
        return found.get(SHA256_METADATA)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        yield from self._objects(prefix)

    def delete(self, key: str) -> None:
        check_key(key)
        blob = self._blob(key)
        with contextlib.suppress(NotFoundError):
            self._call(
                f"delete of {self._where(key)}",
                lambda: blob.delete_blob(delete_snapshots="include"),
            )

    def service_url(self) -> str:
        url = self.config.service_url
        if self.config.connection_string and not self.config.service_url_set:
            url = self._client().url  # parsed from the connection string, no request made
        return url.split("?", 1)[0].rstrip("/") + "/"

    def url_for(self, namespace: str, timestamp: str) -> str:
        return f"{self.service_url()}{self.config.container}/{namespace}/{timestamp}/"

    def locked_until(self, key: str) -> datetime | None:
        return None  # object_lock is False: nothing here is ever locked

    def extend_lock(self, key: str, until: datetime) -> None:
        return None  # object_lock is False (immutability policies are not used)

    # --- the container ---
    def _container_exists(self) -> bool:
        """One request, no retries (readiness must answer fast); errors name the setting."""
        what = f"check of container {self.config.container}"
        try:
            # Listing one blob, not Get Container Properties: a container SAS (the
            # least-privilege credential) may list but not read the container's properties.
            next(self._container().list_blobs(results_per_page=1).by_page(), None)
        except ServiceRequestError:
            where = (
                "the account in AZURE_STORAGE_CONNECTION_STRING"
                if self.config.connection_string
                else f"{self.config.service_url} (AZURE_STORAGE_ACCOUNT_SERVICE_URL)"
            )
            raise UnreachableError(
                f"{what}: cannot connect to {redact(where, self.config.secrets)}"
            ) from None
        except Exception as exc:
            if error_code(exc) == "ContainerNotFound":
                return False
            mapped = azure_error(exc, what=what, config=self.config)
            if mapped is None:
                raise
            raise mapped from None
        return True

    def check(self) -> None:
        if not self._container_exists():
            raise ConfigError(self.config.missing_container)

    def init(self) -> None:
        if self._container_exists():
            return
        container = self._container()
        try:
            self._call(f"creation of container {self.config.container}", container.create_container)
        except PermanentError as exc:
            if "ContainerAlreadyExists" not in str(exc):  # made by someone else meanwhile
                raise


class _Chunks:
    """A download's chunks as a stream whose failures surface as TransientError."""

    def __init__(self, chunks: Iterator[bytes], what: str, config: AzureConfig) -> None:
        self._chunks, self._what, self._config = chunks, what, config
        self._pending = memoryview(b"")

    def read(self, size: int = -1, /) -> bytes:
        if not self._pending:
            try:
                self._pending = memoryview(next(self._chunks, b""))
            except Exception as exc:
                mapped = azure_error(exc, what=self._what, config=self._config)
                if mapped is None:
                    raise
                raise mapped from None
        count = len(self._pending) if size < 0 else size
        data, self._pending = bytes(self._pending[:count]), self._pending[count:]
        return data

    def close(self) -> None:
        self._pending = memoryview(b"")
