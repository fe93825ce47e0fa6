"""DirectorySource, the kind: it ties the walk, the archive, extraction and the swap
together (the design is in the package's docstring, workers/sources/directory/__init__.py).
"""

import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar

from workers.errors import ConfigError, SourceError
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources.base import Dump, RestoreStream, ScratchRestore
from workers.sources.channel import ChunkChannel
from workers.sources.directory.archive import _describe, _Limits, _write_tar
from workers.sources.directory.check import check_tree
from workers.sources.directory.extract import _extract, _Folders, _LeftOut, _set_folder_attributes
from workers.sources.directory.swap import _remove_quietly, _staging_prefix, _swap, recover_target
from workers.sources.directory.walk import Key, _Walk, decode_position, encode_position

# How long the dump's exit waits for the tar thread once the reader is closed.
JOIN_TIMEOUT = 30.0


class DirectorySource:
    kind: ClassVar[str] = "directory"
    format: ClassVar[str] = "tar"
    volumes: ClassVar[bool] = True

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, settings: Settings, secrets: Sequence[str]
    ) -> "DirectorySource":
        assert spec.path is not None
        return cls(
            spec.path,
            direct_writes=settings.restore_direct_writes,
            direct_reads=settings.backup_direct_reads,
            special_files=spec.special_files,
        )

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        assert spec.path is not None
        if not spec.path.is_dir():
            raise ConfigError(f"{spec.path} is not a directory")
        if not os.access(spec.path, os.R_OK | os.X_OK):
            raise ConfigError(f"{spec.path} is not readable")
        return "directory readable"

    @classmethod
    def restore_test_unavailable(cls, spec: ServiceSpec) -> str | None:
        return None  # per volume: files, bytes, files digest

    @classmethod
    @contextmanager
    def restore_test_target(
        cls, spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
    ) -> Iterator[ScratchRestore]:
        """A scratch folder; per volume, the file count, bytes and the digest of every
        file's path, size and content hash must be those recorded."""
        target = scratch / "tree"
        found: dict[str, int] = {}
        yield ScratchRestore(cls(target), lambda facts: check_tree(target, facts, found), found)

    def __init__(
        self,
        path: Path,
        *,
        direct_writes: bool = True,
        direct_reads: bool = True,
        special_files: bool = False,
    ) -> None:
        self.path = Path(path)
        self.direct_writes = direct_writes  # RESTORE_DIRECT_WRITES (see direct_write.py)
        self.direct_reads = direct_reads  # BACKUP_DIRECT_READS (see direct_read.py)
        # The service's `special_files = true`: restore device nodes, FIFOs, setuid/setgid.
        self.special_files = special_files

    def dump(self) -> AbstractContextManager[Dump]:
        """The whole tree as one tar (facts: files and bytes)."""
        return self._archive(after=None, max_bytes=None)

    def dump_volume(
        self, *, after: str | None, max_bytes: int, until: str | None = None
    ) -> AbstractContextManager[Dump]:
        """The entries after position `after` (None: from the root) up to `max_bytes` of files,
        or, with `until` (a boundary from plan_volumes), exactly the entries up to `until`.

        Facts: `files`, `bytes`, `after`, `last` (the position of the last entry
        written, or `until`: the next volume's `after`) and `final` (True once the
        walk is done).
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        return self._archive(after=after, max_bytes=max_bytes, until=until)

    def plan_volumes(self, *, after: str | None, max_bytes: int) -> Iterator[str | None]:
        """The `until` of each volume from `after` on, by dump_volume's rule; None ends the walk.

        A walk that only lists folders and stats entries, lazily: each boundary is
        known before its volume's bytes are read, so volumes can be archived at once.
        """
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not self.path.is_dir():
            yield None  # one volume, whose dump says what is wrong (and the catalog records it)
            return
        broot = os.fsencode(os.path.realpath(self.path))
        walk = _Walk(broot, None if after is None else decode_position(after))
        held = 0  # file bytes in the volume so far
        previous: Key = ()  # its last entry
        while (key := walk.next()) is not None:
            try:
                status = os.lstat(os.path.join(broot, *key))
            except FileNotFoundError:
                continue
            size = status.st_size if stat.S_ISREG(status.st_mode) else 0
            if held and held + size > max_bytes:
                yield encode_position(previous)
                held = 0
            held += size
            previous = key
            if stat.S_ISDIR(status.st_mode):
                walk.enter(key)
        yield None

    @contextmanager
    def _archive(
        self, *, after: str | None, max_bytes: int | None, until: str | None = None
    ) -> Iterator[Dump]:
        root = self.path
        start = None if after is None else decode_position(after)
        end = None if until is None else decode_position(until)
        if not root.is_dir():
            raise SourceError(f"directory {root} does not exist (or is not a directory)")
        facts: dict[str, Any] = {"kind": self.kind, "files": 0, "bytes": 0}
        if max_bytes is not None:
            facts.update(after=after, last=after, final=False)
        failures: list[BaseException] = []
        # Two chunks ahead: volumes archive side by side, so one waiting tar thread
        # seldom leaves the compressors idle, and each chunk held is memory.
        channel = ChunkChannel(depth=2)
        real_root = os.path.realpath(root)
        limits = _Limits(start, end, max_bytes)
        args = (real_root, channel, facts, failures, limits, self.direct_reads)
        writer = threading.Thread(target=_write_tar, args=args, name="tar-dump", daemon=True)
        writer.start()
        try:
            yield Dump(stream=channel, facts=facts)
        finally:
            channel.close()  # a writer still running gets BrokenPipeError and ends
            writer.join(JOIN_TIMEOUT)
        if writer.is_alive():
            raise SourceError(f"archiving {root} did not stop within {JOIN_TIMEOUT:.0f}s")
        if failures:
            raise SourceError(f"could not archive {root}: {_describe(failures[0])}")

    def restore(self, stream: RestoreStream) -> None:
        self.restore_volumes([stream])

    def recover(self) -> None:
        """Resolve what a killed restore left beside the target (see the package's docstring)."""
        recover_target(Path(os.path.realpath(self.path)))

    def restore_volumes(self, streams: Iterable[RestoreStream]) -> None:
        """Extract every volume, in order, into one staging folder; swap it in after the last.

        `streams` may be a generator that opens each volume as it is reached; it is
        closed when the restore ends, however it ends.
        """
        target = Path(os.path.realpath(self.path))  # a symlinked path keeps its link
        if os.path.lexists(target) and not target.is_dir():
            raise SourceError(f"cannot restore into {target}: it exists and is not a directory")
        if os.path.ismount(target):  # a mount point cannot be renamed aside
            raise SourceError(
                f"cannot restore into {target}: it is a mount point; "
                "configure a folder inside it as the service's path"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=_staging_prefix(target), dir=target.parent)
        volumes = iter(streams)
        try:
            folders: _Folders = []
            left_out = _LeftOut()
            count = 0
            for stream in volumes:
                _extract(
                    stream,
                    staging,
                    target,
                    folders,
                    direct_writes=self.direct_writes,
                    left_out=None if self.special_files else left_out,
                )
                stream.verify()  # nothing below runs unless every stored byte matched
                count += 1
            if count == 0:
                raise SourceError(f"no volumes to restore into {target}")
            _set_folder_attributes(folders, staging)
            _swap(Path(staging), target)
            left_out.report(target)
        except BaseException:
            _remove_quietly(staging)
            raise
        finally:
            close = getattr(volumes, "close", None)
            if close is not None:  # a generator: let it close what it opened
                close()
