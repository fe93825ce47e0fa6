"""Reading a stored artifact back: is it, byte for byte, what its manifest entry says?"""

import hashlib

from workers.errors import IntegrityError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE
from workers.stores.base import ObjectStore


def check_stored(store: ObjectStore, entry: ArtifactEntry) -> int:
    """Read an artifact back from `store`: its size and SHA-256 must be the manifest's."""
    digest, size = hashlib.sha256(), 0
    with store.open_read(entry.key) as raw:
        while chunk := raw.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{entry.key} does not match its size and SHA-256 in the manifest")
    return size
