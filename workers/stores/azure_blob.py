"""Azure Blob Storage (and Azurite) through azure-storage-blob, as block blobs.

An upload is a set of uncommitted blocks: create_upload only mints an id, each
part is a staged block named `<upload id>-<part number:06d>` (equal length, as
Azure requires; the SDK base64-encodes it on the wire), and complete commits the
block list in part order, which makes the blob appear all at once.

Abort: Azure cannot delete uncommitted blocks directly. When the blob has no
committed version, abort commits an empty block list (which discards every
uncommitted block) and deletes the empty blob it made. When a committed version
exists, it is left alone and Azure garbage-collects the uncommitted blocks after
seven days. list_uploads only reports blobs without a committed version, and
only uploads that staged at least one block (nothing exists server-side before).

There is one retry layer, workers.retry: the SDK's retry policy is off
(retry_total=0). Downloads go through the resuming reader in 4 MiB ranges. (The
SDK has a hard-coded loop that re-reads a chunk up to three times after some
body errors, IncompleteRead and decode errors; a reset connection is not one of
them and reaches the resuming reader at once.)
"""

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobClient, BlobServiceClient, ContainerClient

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
CHUNK = 4 * MiB  # per download request: bounds memory and allows a per-range MD5
BLOCK_ID = re.compile(r"^(?P<upload>[0-9a-f]{32})-(?P<number>\d{6})$")
TRANSIENT_CODES = frozenset(
    {"ServerBusy", "OperationTimedOut", "InternalError", "ContainerBeingDeleted"}
)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# The service found the body differs from the Content-MD5 (or CRC64) we sent: damaged
# on the way, and our copy is good, so sending it again is the cure.
DAMAGED_IN_TRANSIT = frozenset({"Md5Mismatch", "Crc64Mismatch"})
AZURITE_MD5_MISMATCH = "Provided contentMD5 doesn't match."  # Azurite's InvalidOperation


def block_id(upload_id: str, number: int) -> str:
    """The block of part `number`: every id of an upload has the same length."""
    return f"{upload_id}-{number:06d}"


def wanted_blocks(upload_id: str, parts: Sequence[UploadedPart]) -> list[tuple[str, int]]:
    """The blocks a commit names: empty parts were never staged."""
    return [(block_id(upload_id, part.number), part.size) for part in parts if part.size]


def parse_block_id(name: str) -> tuple[str, int] | None:
    match = BLOCK_ID.match(name)
    return (match["upload"], int(match["number"])) if match else None


@dataclass(frozen=True)
class AzureConfig:
    container: str
    service_url: str = "https://prophecyathenabackup.blob.core.windows.net/"
    account_name: str = "prophecyathenabackup"
    access_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    service_url_set: bool = True  # False: take the URL from the connection string
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "AzureConfig":
        return cls(
            container=settings.azure_storage_container_name,
            service_url=settings.azure_storage_account_service_url,
            account_name=settings.azure_storage_account_name,
            access_key=secret_value(settings.azure_storage_access_key),
            sas_token=secret_value(settings.azure_storage_sas_token),
            connection_string=secret_value(settings.azure_storage_connection_string),
            service_url_set="azure_storage_account_service_url" in settings.model_fields_set,
        )

    @property
    def secrets(self) -> list[str]:
        found = [s for s in (self.access_key, self.sas_token, self.connection_string) if s]
        for part in (self.connection_string or "").split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
                found.append(value)
        return found

    @property
    def credentials_hint(self) -> str:
        if self.connection_string:
            return "AZURE_STORAGE_CONNECTION_STRING"
        if self.access_key:
            return "AZURE_STORAGE_ACCOUNT_NAME / AZURE_STORAGE_ACCESS_KEY"
        return "AZURE_STORAGE_SAS_TOKEN (its permissions and expiry)"

    @property
    def missing_container(self) -> str:
        return (
            f"container {self.container} does not exist (AZURE_STORAGE_CONTAINER_NAME): "
            "run `backfleet store init` to create it"
        )


# --- errors ---------------------------------------------------------------------------


def _code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def azure_error(exc: BaseException, *, what: str, config: AzureConfig) -> BackfleetError | None:
    """The Backfleet error for an SDK or network failure; None for anything else (a bug)."""
    if isinstance(exc, HttpResponseError):
        code = _code(exc)
        status = exc.status_code
        # Never str(exc): Azure's auth errors quote the request's signature.
        detail = f"{what}: HTTP {status} {code}".strip() if status else f"{what}: {code}"
        if code == "ContainerNotFound":
            return ConfigError(f"{what}: {config.missing_container}")
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            return ConfigError(f"{detail} (check {config.credentials_hint})")
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
    if isinstance(exc, ServiceRequestError | ServiceResponseError | OSError):
        return TransientError(f"{what}: {type(exc).__name__}: {_cause(exc, config)}")
    if isinstance(exc, AzureError):
        return PermanentError(f"{what}: {type(exc).__name__}: {_cause(exc, config)}")
    return None


def _cause(exc: BaseException, config: AzureConfig) -> str:
    """A short, secret-free description of a transport failure (URLs may hold a SAS)."""
    if isinstance(exc, HttpResponseError) and exc.status_code:
        return ""
    return redact(str(exc).split("\n", 1)[0], config.secrets)[:300]


# --- the store ------------------------------------------------------------------------


class AzureBlobStore:
    kind: ClassVar[str] = "azure-blob-storage"
    max_parts: ClassVar[int] = 50_000  # committed blocks per blob
    min_part_size: ClassVar[int] = 1
    max_part_size: ClassVar[int] = 4000 * MiB  # per staged block
    parallel_parts: ClassVar[bool] = True
    object_lock: ClassVar[bool] = False
    settings_fields: ClassVar[tuple[str, ...]] = (
        "azure_storage_container_name",
        "azure_storage_account_service_url",
        "azure_storage_account_name",
        "azure_storage_access_key",
        "azure_storage_sas_token",
        "azure_storage_connection_string",
    )
    secret_fields: ClassVar[tuple[str, ...]] = (
        "azure_storage_account_service_url",
        "azure_storage_access_key",
        "azure_storage_sas_token",
        "azure_storage_connection_string",
    )

    def __init__(self, config: AzureConfig, *, policy: RetryPolicy | None = None) -> None:
        self.config = config
        self.policy = policy or RetryPolicy()
        self._service: PerProcess[BlobServiceClient] = PerProcess(self._make_client)

    @classmethod
    def from_settings(cls, settings: Settings) -> "AzureBlobStore":
        return cls(AzureConfig.from_settings(settings), policy=RetryPolicy.from_settings(settings))

    # --- the client: made on first use, again after a fork ---
    def _client(self) -> BlobServiceClient:
        return self._service.get()

    def _make_client(self) -> BlobServiceClient:
        cfg = self.config
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

    def _container(self) -> ContainerClient:
        return self._client().get_container_client(self.config.container)

    def _blob(self, key: str) -> BlobClient:
        return self._container().get_blob_client(key)

    # --- calling the SDK ---
    def _once(self, what: str, operation: Callable[[], T]) -> T:
        return call_once(what, operation, self._map_error)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        return call_retried(what, operation, self._map_error, self.policy)

    def _map_error(self, exc: BaseException, what: str) -> BackfleetError | None:
        return azure_error(exc, what=what, config=self.config)

    def _where(self, key: str) -> str:
        return f"{self.config.container}/{key}"

    def _blocks(self, key: str) -> tuple[list[tuple[str, int]], dict[str, int]] | None:
        """The blob's committed blocks in order and its uncommitted ones; None if no blob."""
        blob = self._blob(key)
        try:
            committed, uncommitted = self._call(
                f"block list of {self._where(key)}", lambda: blob.get_block_list("all")
            )
        except NotFoundError:
            return None
        return (
            [(str(block.id), int(block.size)) for block in committed],
            {str(block.id): int(block.size) for block in uncommitted},
        )

    def _uncommitted(self, key: str) -> dict[str, int] | None:
        blocks = self._blocks(key)
        return None if blocks is None else blocks[1]

    # --- multipart uploads as staged blocks ---
    def create_upload(self, key: str) -> str:
        check_key(key)
        return uuid.uuid4().hex  # nothing exists server-side until the first block

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        if not 1 <= number <= self.max_parts:
            raise PermanentError(f"part number {number} is outside 1..{self.max_parts}")
        if len(data) > self.max_part_size:
            raise PermanentError(f"part {number} of {key} is larger than a block may be")
        if not parse_block_id(block_id(upload_id, 1)):
            raise PermanentError("upload id is not one this store issued")
        name = block_id(upload_id, number)
        if not data:  # an empty artifact's one part: nothing to stage, nothing to commit
            return UploadedPart(number=number, size=0, etag=name)
        blob = self._blob(key)
        payload = bytes(data)  # the SDK's MD5 takes bytes only (a buffer is copied)
        # Not retried here: the pipeline retries each part. MD5 lets Azure refuse bad bytes.
        self._once(
            f"upload of part {number} of {self._where(key)}",
            lambda: blob.stage_block(name, payload, length=len(payload), validate_content=True),
        )
        return UploadedPart(number=number, size=len(data), etag=name)

    def complete_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> None:
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise PermanentError(f"upload of {key}: part numbers must be distinct")
        committed, staged = self._blocks(key) or ([], {})
        if problems := self._mismatches(upload_id, ordered, staged):
            if committed == wanted_blocks(upload_id, ordered):
                return  # a retried complete: the first one went through
            raise PermanentError(f"upload of {self._where(key)}: {'; '.join(problems)}")
        blocks = [BlobBlock(block_id=name) for name, _ in wanted_blocks(upload_id, ordered)]
        blob = self._blob(key)
        self._call(f"completion of {self._where(key)}", lambda: blob.commit_block_list(blocks))

    @staticmethod
    def _mismatches(
        upload_id: str, parts: Sequence[UploadedPart], staged: dict[str, int]
    ) -> list[str]:
        problems = []
        for part in parts:
            name = block_id(upload_id, part.number)
            if part.etag and part.etag != name:
                problems.append(f"part {part.number} has another block id")
            elif not part.size:
                continue  # never staged
            elif name not in staged:
                problems.append(f"part {part.number} is missing")
            elif staged[name] != part.size:
                problems.append(f"part {part.number} holds {staged[name]} bytes, not {part.size}")
        return problems

    def abort_upload(self, key: str, upload_id: str) -> None:
        staged = self._uncommitted(key)
        if not staged or not any(name.startswith(f"{upload_id}-") for name in staged):
            return  # nothing of this upload is left
        blob = self._blob(key)
        what = f"abort of the upload to {self._where(key)}"
        try:
            # Committing an empty list discards every uncommitted block; If-None-Match: *
            # makes sure no committed version is overwritten.
            made = self._call(
                what, lambda: blob.commit_block_list([], match_condition=MatchConditions.IfMissing)
            )
        except PermanentError:
            if self._committed(key):
                return  # a real blob: leave it; Azure drops the stale blocks in 7 days
            # Azurite answers 412 for a blob that only has uncommitted blocks.
            made = self._call(what, lambda: blob.commit_block_list([]))
        with contextlib.suppress(NotFoundError, PermanentError):  # someone wrote it meanwhile
            self._call(
                what,
                lambda: blob.delete_blob(
                    etag=str(made["etag"]), match_condition=MatchConditions.IfNotModified
                ),
            )

    def _committed(self, key: str) -> bool:
        blob = self._blob(key)
        try:
            self._call(f"check of {self._where(key)}", blob.get_blob_properties)
        except NotFoundError:
            return False
        return True

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        # Extra staged blocks (parts in flight when a worker died) are harmless: the commit
        # names its blocks and Azure discards the others.
        # Only empty parts: nothing was staged, so nothing can have been lost either.
        staged = self._uncommitted(key) if any(part.size for part in parts) else {}
        return staged is not None and not self._mismatches(upload_id, parts, staged)

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        container = self._container()
        committed = (info.key for info in self.list(prefix))
        next_committed = next(committed, None)
        for item in self._pages(
            f"list of the uploads under {self._where(prefix)}",
            lambda token: container.list_blobs(
                name_starts_with=prefix, include=["uncommittedblobs"]
            ).by_page(continuation_token=token),
        ):
            name = str(item.name)
            # Both listings are in name order: walk them together.
            while next_committed is not None and next_committed < name:
                next_committed = next(committed, None)
            if next_committed == name:
                continue  # a committed blob: its stale blocks are Azure's to collect
            started = getattr(item, "last_modified", None) or getattr(item, "creation_time", None)
            blocks = self._uncommitted(name) or {}
            uploads = {parsed[0] for block in blocks if (parsed := parse_block_id(block))}
            for upload_id in sorted(uploads):
                yield PendingUpload(
                    key=name,
                    upload_id=upload_id,
                    started=started.astimezone(UTC) if isinstance(started, datetime) else None,
                )

    def _pages(self, what: str, open_pages: Callable[[str | None], Any]) -> Iterator[Any]:
        """Every item of a paged listing, each page fetched (and retried) on its own."""
        token: str | None = None
        while True:

            def fetch(token: str | None = token) -> tuple[list[Any], str | None]:
                pages = open_pages(token)
                return list(next(pages, [])), pages.continuation_token

            items, token = self._call(what, fetch)
            yield from items
            if not token:
                return

    # --- whole objects ---
    def put_object(self, key: str, data: bytes) -> None:
        check_key(key)
        blob = self._blob(key)
        self._call(
            f"write of {self._where(key)}",
            lambda: blob.upload_blob(
                data, length=len(data), overwrite=True, validate_content=True, max_concurrency=1
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

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        container = self._container()
        for item in self._pages(
            f"list of {self._where(prefix)}",
            lambda token: container.list_blobs(name_starts_with=prefix).by_page(
                continuation_token=token
            ),
        ):
            modified = item.last_modified
            yield ObjectInfo(
                key=str(item.name),
                size=int(item.size),
                modified=modified.astimezone(UTC) if isinstance(modified, datetime) else None,
            )

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
            raise ConfigError(
                f"{what}: cannot connect to {redact(where, self.config.secrets)}"
            ) from None
        except Exception as exc:
            if _code(exc) == "ContainerNotFound":
                return False
            mapped = azure_error(exc, what=what, config=self.config)
            if mapped is None:
                raise
            raise mapped from None
        return True

    def check(self) -> None:
        if not self._container_exists():
            raise ConfigError(self.config.missing_container)

    def locked_until(self, key: str) -> datetime | None:
        return None  # object_lock is False: nothing here is ever locked

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
