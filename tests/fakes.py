"""Small test doubles shared by the unit tests."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from workers.errors import SourceError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import Dump, RestoreStream, Source
from workers.stores.base import ObjectStore
from workers.transfer.upload import StoredArtifact, store_artifact


class BytesSource:
    """A source whose dump is a fixed byte string; its restore stages, verifies, then keeps.

    `fail_after_dump` makes the dump end like a tool that exited non-zero.
    Subclass it to pose as another kind (its `kind` and `format`).
    """

    kind: ClassVar[str] = "bytes"
    format: ClassVar[str] = "bin"
    volumes: ClassVar[bool] = False

    def __init__(self, data: bytes, *, fail_after_dump: bool = False) -> None:
        self.data, self.fail_after_dump = data, fail_after_dump
        self.restored: bytes | None = None

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        yield Dump(stream=io.BytesIO(self.data), facts={"kind": self.kind})
        if self.fail_after_dump:
            raise SourceError("the dump tool failed")

    def restore(self, stream: RestoreStream) -> None:
        staged = bytearray()
        while chunk := stream.read(65536):
            staged += chunk
        stream.verify()
        self.restored = bytes(staged)  # "commit" only after verification


def entry_of(stored: StoredArtifact, *, service: str, fmt: str) -> ArtifactEntry:
    """The manifest entry describing a stored artifact."""
    return ArtifactEntry(
        service=service,
        key=stored.key,
        format=fmt,
        compression="zstd",
        encryption=stored.encryption,
        size=stored.size,
        sha256=stored.sha256,
        source_size=stored.source_size,
        source=stored.facts,
    )


def stored_entry(
    store: ObjectStore, source: Source, *, key: str, service: str, part_size: int = 256 * 1024
) -> ArtifactEntry:
    """Back `source` up into `store` as `key` and describe it as the manifest would."""
    stored = store_artifact(
        store=store, key=key, source=source, part_size=part_size, compression_level=1
    )
    return entry_of(stored, service=service, fmt=source.format)
