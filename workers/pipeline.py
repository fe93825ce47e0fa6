"""Source stream -> zstd -> SHA-256 -> parts -> store, and back.

Memory stays bounded: one read chunk (1 MiB) plus one part buffer
(BACKUP_PART_SIZE) plus zstd's window, whatever the size of the backup.
"""

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

from workers.errors import IntegrityError
from workers.manifest import ArtifactEntry
from workers.sources.base import CHUNK_SIZE, Source
from workers.stores.base import ObjectStore, UploadedPart

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    size: int
    sha256: str
    source_size: int
    facts: dict[str, Any]


class _PartWriter:
    """Collects bytes into parts of `part_size` and uploads each as it fills."""

    def __init__(self, store: ObjectStore, key: str, upload_id: str, part_size: int) -> None:
        self.store, self.key, self.upload_id, self.part_size = store, key, upload_id, part_size
        self.buffer = bytearray()
        self.parts: list[UploadedPart] = []
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.digest.update(data)
        self.size += len(data)
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._send(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]

    def close(self) -> None:
        if self.buffer or not self.parts:  # an empty artifact is still one (empty) part
            self._send(bytes(self.buffer))
            self.buffer.clear()

    def _send(self, data: bytes) -> None:
        number = len(self.parts) + 1
        self.parts.append(self.store.upload_part(self.key, self.upload_id, number, data))


def store_artifact(
    *,
    store: ObjectStore,
    key: str,
    source: Source,
    part_size: int,
    compression_level: int,
    on_progress: ProgressCallback | None = None,
) -> StoredArtifact:
    """Stream one source into the store as `key`; nothing is left behind on failure."""
    upload_id = store.create_upload(key)
    # The abort is registered now, so every failure path below cleans up.
    try:
        writer = _PartWriter(store, key, upload_id, part_size)
        compressor = zstandard.ZstdCompressor(level=compression_level).compressobj()
        source_size = 0
        with source.dump() as dump:
            while chunk := dump.stream.read(CHUNK_SIZE):
                source_size += len(chunk)
                writer.write(compressor.compress(chunk))
                if on_progress is not None:
                    on_progress(source_size)
            facts = dict(dump.facts)
        writer.write(compressor.flush())
        writer.close()
        store.complete_upload(key, upload_id, writer.parts)
    except BaseException:
        try:
            store.abort_upload(key, upload_id)
        except Exception:  # the original failure matters more than the cleanup's
            log.exception("could not abort the upload of %s", key)
        raise
    return StoredArtifact(
        key=key,
        size=writer.size,
        sha256=writer.digest.hexdigest(),
        source_size=source_size,
        facts=facts,
    )


class VerifyingReader:
    """Decompresses stored bytes while hashing them; `verify()` settles the SHA-256.

    Any mismatch, truncation or undecodable byte raises IntegrityError, which
    sources let propagate before they commit anything to the target.
    """

    def __init__(self, raw: BinaryIO, entry: ArtifactEntry) -> None:
        self.raw, self.entry = raw, entry
        self.digest = hashlib.sha256()
        self.stored_bytes = 0
        self.pending = bytearray()
        self.finished = False
        self.decompressor = (
            zstandard.ZstdDecompressor().decompressobj() if entry.compression == "zstd" else None
        )

    def read(self, size: int = -1, /) -> bytes:
        while not self.finished and (size < 0 or len(self.pending) < size):
            self._fill()
        if size < 0 or size >= len(self.pending):
            data = bytes(self.pending)
            self.pending.clear()
        else:
            data = bytes(self.pending[:size])
            del self.pending[:size]
        return data

    def verify(self) -> None:
        while not self.finished:
            self._fill()
        self.pending.clear()

    def _fill(self) -> None:
        chunk = self.raw.read(CHUNK_SIZE)
        if not chunk:
            self._check_end()
            return
        self.digest.update(chunk)
        self.stored_bytes += len(chunk)
        if self.decompressor is None:
            self.pending += chunk
            return
        try:
            self.pending += self.decompressor.decompress(chunk)
        except zstandard.ZstdError:
            raise IntegrityError(f"{self.entry.key} does not decompress: it is corrupt") from None

    def _check_end(self) -> None:
        self.finished = True
        if self.stored_bytes != self.entry.size:
            raise IntegrityError(
                f"{self.entry.key} holds {self.stored_bytes} bytes, "
                f"the manifest says {self.entry.size}"
            )
        if self.digest.hexdigest() != self.entry.sha256:
            raise IntegrityError(f"{self.entry.key} does not match its SHA-256 in the manifest")


def restore_artifact(*, store: ObjectStore, entry: ArtifactEntry, source: Source) -> None:
    """Stream one artifact back into its source; the source commits only after verify()."""
    with store.open_read(entry.key) as raw:
        source.restore(VerifyingReader(raw, entry))
