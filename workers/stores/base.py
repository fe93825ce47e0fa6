"""The small protocol every object store implements, and what it returns.

A multipart upload is created, fed parts in order, then completed or aborted;
callers register the abort the moment the upload exists (see transfer/upload.py) so
no failure path leaves one behind. Provider limits are class constants.

Every object Backfleet writes carries the SHA-256 (hex) of its bytes in the store's
own metadata, under SHA256_METADATA: S3 user metadata (`x-amz-meta-sha256`), Azure
blob metadata (`sha256`), the local store's extended attribute `user.sha256` (where
the filesystem keeps them). Anyone can check an object with the store's own tools;
`stored_sha256` reads it back (verification cross-checks it with the manifest).

Storage classes (tiers): a store lists its classes warm to cold (`storage_classes`;
empty: it has one), those that must be rehydrated before a read (`archive_classes`) and
the minimum storage duration each bills (`min_storage_days`), as class data. Retention
moves kept backups colder (`set_storage_class`), restores ask for archived objects back
(`rehydrate`) and wait, and a store with Object Lock has its retention extended
(`extend_lock`) while the policy keeps a backup (workers/operations/tiers.py).
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, ClassVar, Protocol, Self

from workers.errors import PermanentError
from workers.settings import Settings

SHA256_METADATA = "sha256"  # the metadata name of an object's SHA-256 (hex)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class StoredFacts:
    """What the store says of an object without a byte of it being read."""

    size: int
    storage_class: str
    sha256: str | None  # what its metadata records (SHA256_METADATA); None: nothing
    # Digests the store itself computed over the whole object's bytes when it wrote them,
    # by algorithm (SHA256, CRC32, CRC32C, CRC64NVME, MD5), hex: S3's full-object
    # checksums, an Azure blob's Content-MD5. Composite (per-part) checksums are left out.
    checksums: Mapping[str, str]


@dataclass(frozen=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    started: datetime | None = None


@dataclass(frozen=True)
class UploadedPart:
    number: int  # 1-based, in upload order
    size: int
    etag: str  # the provider's receipt for the part (ETag, block id, offset…)
    # SHA-256 of the stored bytes from the start through this part: a resumed
    # upload proves it regenerated the same bytes without hashing twice.
    sha256: str = ""


class ObjectStore(Protocol):
    kind: ClassVar[str]
    max_parts: ClassVar[int]
    min_part_size: ClassVar[int]
    max_part_size: ClassVar[int]
    parallel_parts: ClassVar[bool]  # may parts be sent at once, out of order?
    object_lock: ClassVar[bool]  # may objects carry a retention lock (see locked_until)?
    # The storage class (tier) every object is written with today: S3 STANDARD, Azure Hot
    # (the account's default access tier), `local`. The catalog records it per artifact.
    default_storage_class: ClassVar[str]
    # Its storage classes, warm to cold, the default first; empty: it has only the default.
    storage_classes: ClassVar[tuple[str, ...]]
    # Those whose objects cannot be read until rehydrated (S3 GLACIER, Azure Archive).
    archive_classes: ClassVar[frozenset[str]]
    # The days a class bills an object for whatever happens (deleted or moved earlier).
    min_storage_days: ClassVar[Mapping[str, int]]

    def create_upload(self, key: str) -> str:
        """Start a multipart upload of `key`; returns its upload id."""
        ...

    def upload_part(
        self, key: str, upload_id: str, number: int, data: bytes | bytearray
    ) -> UploadedPart:
        """Store part `number`. `data` may be a buffer the caller reuses once this
        returns: a store must not keep a reference to it."""
        ...

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[UploadedPart],
        *,
        sha256: str | None = None,
    ) -> None:
        """Make the object visible, all at once, with exactly these parts.

        `sha256`: the hex SHA-256 of the whole object, which the object then carries in
        its metadata (SHA256_METADATA); None: none is recorded.
        """
        ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Discard an unfinished upload; a no-op if it is already gone."""
        ...

    def resume_upload(self, key: str, upload_id: str, parts: Sequence[UploadedPart]) -> bool:
        """True if the upload still holds exactly these parts and can take the next ones.

        False when it is gone or differs: the caller aborts it and starts again.
        """
        ...

    def list_uploads(self, prefix: str) -> Iterator[PendingUpload]:
        """Unfinished multipart uploads under `prefix` (for the stale-upload sweep)."""
        ...

    def put_object(self, key: str, data: bytes) -> None:
        """Store a small object (a manifest) atomically, its SHA-256 in its metadata."""
        ...

    def stored_sha256(self, key: str) -> str | None:
        """The SHA-256 the object's metadata records (SHA256_METADATA), without reading
        its bytes; None when it records none (written before, or a filesystem without
        extended attributes). NotFoundError if there is no such object."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """A stream of the object's bytes; NotFoundError if there is none.

        Network stores resume from the last byte read after a dropped connection.
        """
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every complete object whose key starts with `prefix`, in key order."""
        ...

    def delete(self, key: str) -> None: ...

    def url_for(self, namespace: str, timestamp: str) -> str:
        """Where a person finds the backup (`backupurl` in the API)."""
        ...

    def check(self) -> None:
        """Raise ConfigError naming the setting to fix when the store cannot be used."""
        ...

    def init(self) -> None:
        """Create the bucket, container or directory (`backfleet store init`)."""
        ...

    def warm_up(self) -> None:
        """Load the SDK and build the client now, without a request: a worker process
        does it at start (workers.fleet.warm_up), not during its first backup."""
        ...

    def locked_until(self, key: str) -> datetime | None:
        """When the object's retention lock ends; None if it has none (or the store
        cannot lock: `object_lock` False). Retention keeps what is still locked."""
        ...

    def extend_lock(self, key: str, until: datetime) -> None:
        """Keep the object's retention lock until at least `until` (never shortened);
        a no-op on a store without `object_lock`."""
        ...

    def storage_class_of(self, key: str) -> str:
        """The class the object is stored in now; NotFoundError if there is none."""
        ...

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Move the object to `storage_class` (one of `storage_classes`), its bytes,
        metadata and lock kept; a no-op if it is there already. PermanentError on a
        store with one class, or for an archived object (rehydrate it first)."""
        ...

    def rehydrate(self, key: str) -> bool:
        """True if the object can be read now; else ask the store to bring it back from
        its archive class (once: asking again while it is under way is fine) and False."""
        ...

    def stored_facts(self, key: str) -> StoredFacts:
        """Size, class, recorded SHA-256 and the store's own digests of the object, without
        reading it (verification of archived objects); NotFoundError if there is none."""
        ...


class RegisteredStore(ObjectStore, Protocol):
    """A store the fleet can be configured with (listed in `stores.STORES`)."""

    # The Settings fields it reads, and those of them that hold (or, like a URL with a
    # password, may hold) a secret: the fleet redacts them (tests check both lists).
    settings_fields: ClassVar[tuple[str, ...]]
    secret_fields: ClassVar[tuple[str, ...]]

    @classmethod
    def from_settings(cls, settings: Settings) -> Self: ...


def check_key(key: str) -> str:
    """Refuse keys that could leave the store's namespace: `..`, absolute, empty parts."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise PermanentError(f"object key {key!r} is not a clean relative path")
    return key


class SingleClass:
    """The tier answers of a store with one storage class and no Object Lock (local,
    memory, null): nothing to move, nothing archived, no lock to extend."""

    kind: ClassVar[str]
    storage_classes: ClassVar[tuple[str, ...]] = ()
    archive_classes: ClassVar[frozenset[str]] = frozenset()
    min_storage_days: ClassVar[Mapping[str, int]] = {}

    def extend_lock(self, key: str, until: datetime) -> None:
        return None  # object_lock is False

    def set_storage_class(self, key: str, storage_class: str) -> None:
        raise single_class(self.kind, storage_class)

    def rehydrate(self, key: str) -> bool:
        return True  # nothing here is ever archived


def single_class(kind: str, storage_class: str) -> PermanentError:
    """The error of set_storage_class on a store with one class (STORAGE_CLASSES is refused
    for it when the fleet is built, so only a direct call gets here)."""
    return PermanentError(
        f"the {kind} store has a single storage class: {storage_class} is not one of its own"
    )
