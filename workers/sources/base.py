"""What a source is: something that dumps to a byte stream and restores from one.

Restores are staged, then committed: a source reads the whole stream into a
staging place (a transaction, a folder beside the target, a temporary file),
calls `stream.verify()` — which reads to the end and raises IntegrityError if
the stored bytes do not match the manifest — and only then swaps the staged
data in. So a corrupt or tampered artifact never touches the target.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

CHUNK_SIZE = 1024 * 1024


class ReadableStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class RestoreStream(ReadableStream, Protocol):
    def verify(self) -> None:
        """Read to the end and raise IntegrityError unless every byte matched the manifest."""
        ...


@dataclass
class Dump:
    """A running dump: read `stream` to the end; `facts` is filled in by then."""

    stream: ReadableStream
    facts: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    kind: ClassVar[str]  # postgres, sqlite, directory

    @property
    def format(self) -> str:
        """The artifact's file extension: pgdump, sqlite, tar, or a command service's own."""
        ...

    def dump(self) -> AbstractContextManager[Dump]:
        """A context whose exit raises SourceError if the dump did not finish cleanly."""
        ...

    def restore(self, stream: RestoreStream) -> None: ...


def iter_chunks(stream: ReadableStream, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk
