"""Reading a stored artifact back: is it, byte for byte, what its manifest entry says?"""

import hashlib

from workers.errors import IntegrityError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE
from workers.stores.base import ObjectStore


def check_recorded_sha256(store: ObjectStore, entry: ArtifactEntry) -> None:
    """The SHA-256 in the object's metadata, where it carries one, must be the manifest's:
    one HEAD, no byte read. A difference means the object (or its metadata) was
    rewritten since Backfleet stored it. NotFoundError if the object is gone."""
    recorded = store.stored_sha256(entry.key)
    if recorded is not None and recorded.strip().lower() != entry.sha256:
        raise IntegrityError(
            f"{entry.key}: the store's metadata records SHA-256 {recorded[:16]}…, "
            f"the manifest {entry.sha256[:16]}…: the object was rewritten after it was stored"
        )


def check_stored(store: ObjectStore, entry: ArtifactEntry) -> int:
    """Read an artifact back from `store`: its recorded SHA-256 (metadata), then its size
    and the SHA-256 of its bytes must be the manifest's."""
    check_recorded_sha256(store, entry)
    digest, size = hashlib.sha256(), 0
    with store.open_read(entry.key) as raw:
        while chunk := raw.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{entry.key} does not match its size and SHA-256 in the manifest")
    return size
