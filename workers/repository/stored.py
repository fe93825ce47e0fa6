"""Reading a stored artifact back: is it, byte for byte, what its manifest entry says?
And, for an archived one that cannot be read without a rehydration, what the store says
of it without a read (check_by_metadata)."""

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


def check_by_metadata(store: ObjectStore, entry: ArtifactEntry) -> str:
    """Judge an object without reading a byte, from what the store says of it: its size
    must be the manifest's, the SHA-256 its metadata records must be the manifest's, and
    so must a SHA-256 the store computed itself over the whole object (S3 keeps one when
    the object was written, or moved to its class, with a SHA256 checksum). At least one
    SHA-256 must be there: a size alone is no proof. Returns what was compared;
    IntegrityError on a difference or with no SHA-256, NotFoundError if the object is gone.

    This proves the object is there, at its length, unchanged in its metadata, and (with
    the store's own SHA-256) that the bytes the store wrote are the manifest's. It does not
    prove they still read back today, decrypt or decompress: only a full read does.
    """
    facts = store.stored_facts(entry.key)
    if facts.size != entry.size:
        raise IntegrityError(
            f"{entry.key}: the store holds {facts.size} bytes, the manifest says {entry.size}"
        )
    compared = ["size"]
    if facts.sha256 is not None:
        if facts.sha256.strip().lower() != entry.sha256:
            raise IntegrityError(
                f"{entry.key}: the store's metadata records SHA-256 {facts.sha256[:16]}…, "
                f"the manifest {entry.sha256[:16]}…: the object was rewritten after it was stored"
            )
        compared.append("recorded SHA-256")
    computed = facts.checksums.get("SHA256")
    if computed is not None:
        if computed != entry.sha256:
            raise IntegrityError(
                f"{entry.key}: the store computed SHA-256 {computed[:16]}… over its bytes, "
                f"the manifest says {entry.sha256[:16]}…"
            )
        compared.append("the store's own SHA-256")
    if len(compared) == 1:
        # A size alone proves nothing: an object rewritten with other bytes of the same
        # length (or an old one stored before Backfleet recorded SHA-256s) would pass.
        raise IntegrityError(
            f"{entry.key} in {facts.storage_class}: the store keeps no SHA-256 of its bytes "
            "(neither recorded in its metadata nor computed by the store), so it cannot be "
            "verified without reading it; a drill or a restore of this backup rehydrates and "
            "reads it"
        )
    others = sorted(set(facts.checksums) - {"SHA256"})
    kept = (
        f"; the store also keeps {', '.join(others)} (not recorded by Backfleet)" if others else ""
    )
    return f"{entry.key} in {facts.storage_class}: {', '.join(compared)} checked{kept}"
