"""What a source is: something that dumps to a byte stream and restores from one.

Restores are staged, then committed: a source reads the whole stream into a
staging place (a transaction, a folder beside the target, a temporary file),
calls `stream.verify()` — which reads to the end and raises IntegrityError if
the stored bytes do not match the manifest — and only then swaps the staged
data in. So a corrupt or tampered artifact never touches the target.
"""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from workers.errors import IntegrityError, SourceError
from workers.services_config import ServiceSpec
from workers.settings import Settings

CHUNK_SIZE = 1024 * 1024
# The pieces a backup reads a dump in, and compresses each into a zstd frame
# (transfer/upload.py): half a CHUNK_SIZE holds ~8 MiB less in a backup of two volumes
# at once (read ahead, frames, their heap), for the same speed and 0.1% more stored
# bytes (bench/RESULTS.md, session 12). Restores read in CHUNK_SIZE.
DUMP_CHUNK_SIZE = 512 * 1024


class ReadableStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class RestoreStream(ReadableStream, Protocol):
    def verify(self) -> None:
        """Read to the end and raise IntegrityError unless every byte matched the manifest."""
        ...


@dataclass
class Dump:
    """A running dump: read `stream` to the end; `facts` is filled in by then.

    `preamble`: a few bytes the restore needs before the stream (PostgreSQL: the
    cluster's roles), stored inside the artifact ahead of the data (transfer/preamble.py)
    and handed back by `preamble_of(stream)` before the restore reads the data.
    """

    stream: ReadableStream
    facts: dict[str, Any] = field(default_factory=dict)
    preamble: bytes | None = None


def preamble_of(stream: object) -> bytes | None:
    """The preamble stored with the artifact a restore stream reads; None: none was."""
    value = getattr(stream, "preamble", None)
    return value if isinstance(value, bytes) else None


class Source(Protocol):
    kind: ClassVar[str]  # postgres, sqlite, directory, command
    # Backs up in volumes (plan_volumes, dump_volume) and restores several at once
    # (restore_volumes)?
    volumes: ClassVar[bool]

    @property
    def format(self) -> str:
        """The artifact's file extension: pgdump, sqlite, tar, or a command service's own."""
        ...

    def dump(self) -> AbstractContextManager[Dump]:
        """A context whose exit raises SourceError if the dump did not finish cleanly."""
        ...

    def restore(self, stream: RestoreStream) -> None: ...

    def restore_volumes(self, streams: Iterable[RestoreStream]) -> None:
        """Every volume in order, committed after the last verified (if `volumes`)."""
        ...

    def recover(self) -> None:
        """Put right what a killed restore left (staging copies, a tree renamed aside)."""
        ...


# Checks a test restore against the facts the manifest recorded, one dict per volume.
FactsCheck = Callable[[Sequence[Mapping[str, Any]]], None]


@dataclass(frozen=True)
class ScratchRestore:
    """Where a test restore (a drill) goes, never the service's own target, and its check.

    The check fills `found` with what the scratch holds (rows per table, or files and
    bytes) before it compares, so a drill records the counts whether they matched or not.
    """

    target: Source
    check: FactsCheck
    found: dict[str, int] = field(default_factory=dict)


class SourceKind(Source, Protocol):
    """A kind the services file may name (listed in `sources.SOURCES`)."""

    @classmethod
    def from_spec(cls, spec: ServiceSpec, settings: Settings, secrets: Sequence[str]) -> Self:
        """The source a services-file entry describes (`secrets` masked in tools' output)."""
        ...

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        """`backfleet check`: raise ConfigError if the service cannot be backed up; else
        say what was found."""
        ...

    @classmethod
    def restore_test_unavailable(cls, spec: ServiceSpec) -> str | None:
        """Why this service cannot be drilled (restored into scratch), or None when
        restore_test_target gives a target and a check. Never a silent skip."""
        ...

    @classmethod
    def restore_test_target(
        cls, spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
    ) -> AbstractContextManager[ScratchRestore] | None:
        """A scratch target (removed on exit) and its check; None when
        `restore_test_unavailable` says why. `time_limit` bounds a restoring tool that runs
        as a process of its own (seconds; the kind's default when None)."""
        ...


class OneStream:
    """For kinds whose backup is one stream: no volumes; `recover` has nothing to do."""

    kind: ClassVar[str]
    volumes: ClassVar[bool] = False

    def restore_volumes(self, streams: Iterable[RestoreStream]) -> None:
        raise IntegrityError(f"{self.kind} sources cannot restore several volumes")

    def recover(self) -> None:
        return None


def compare_row_counts(facts: Mapping[str, Any], counts: dict[str, int]) -> None:
    """Raise IntegrityError unless a restored database's row counts are those recorded."""
    recorded = facts.get("row_counts")
    if recorded is None:
        raise SourceError("the manifest recorded no row counts to compare with")
    if counts != recorded:
        differ = sorted(
            f"{table}: {recorded.get(table)} recorded, {counts.get(table)} restored"
            for table in set(recorded) | set(counts)
            if recorded.get(table) != counts.get(table)
        )
        raise IntegrityError("row counts differ: " + ", ".join(differ[:10]))


def recorded_counts(facts: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """What a drill compares, as the manifest recorded it at backup time: a database's rows
    per table, a tree's files and bytes (its volumes summed); None: nothing was counted."""
    if not facts:
        return None
    if all("row_counts" in volume for volume in facts):
        merged: dict[str, int] = {}
        for volume in facts:
            merged.update(volume["row_counts"])
        return merged
    if all("files" in volume and "bytes" in volume for volume in facts):
        return {
            "files": sum(int(volume["files"]) for volume in facts),
            "bytes": sum(int(volume["bytes"]) for volume in facts),
        }
    return None


def iter_chunks(stream: ReadableStream, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk
