"""A directory: a streaming PAX tar out; extracted beside the target, verified, swapped in.

Dump: a thread writes a PAX tar of the tree into a pipe whose read end is the
dump's stream, so memory stays at a few buffers whatever the tree's size. The
root goes first as ".", so its own mode and mtime travel too. PAX keeps any
name Linux allows (bytes that are not UTF-8 travel raw, via surrogateescape),
long names, symlink targets and hard links; mtimes travel as exact decimal
nanoseconds in the standard PAX `mtime` record and are set back to the nanosecond.

Restore: every member is checked (no absolute name, no `..`, nothing that
resolves outside the staging folder through a link extracted before it);
device nodes and FIFOs are left out and setuid/setgid bits cleared (a setgid
folder keeps its bit) unless the service sets `special_files = true`; then it is
extracted into `.<name>.backfleet-restore-<random>` beside the target. Only
after `verify()` are the two swapped in ONE step, renameat2(RENAME_EXCHANGE),
so the staging name then holds the old tree, which is removed. Where the
exchange is unsupported (not Linux, an old kernel, some filesystems) the
target is renamed aside to `.<name>.backfleet-old-<random>` and the staging
folder into its place. Any failure removes the staging folder and leaves the
target as it was. A worker killed at any point leaves the target old or new;
`recover()`, run at the start of the next restore, puts an old tree renamed
aside back if the target is missing and removes the leftovers.

Volumes (BACKUP_VOLUME_SIZE): `dump_volume(after=…, max_bytes=…)` archives the
entries that come after position `after` in the walk order, and stops before
the regular file that would take the volume's file bytes past `max_bytes`
(files are never split, so a larger file makes a volume of its own). The walk
order is the order of the entries' paths as tuples of byte-string components —
depth first, each folder's names sorted as bytes, the root first — so it is
defined for any path, even one that vanished: volume k holds exactly the
entries in (after_k, last_k], and a backup resumed from the recorded `last` of
its last finished volume neither repeats nor loses an entry, however the tree
changed meanwhile. A folder's children may fall into later volumes than the
folder itself; extraction recreates missing parents. A hard link whose first
name went into an earlier volume travels as a copy. `restore_volumes` extracts
every volume in order into one staging folder, verifying each, and sets the
folders' owners, mtimes and modes only after the last one (extracting into a
folder moves its mtime, and a read-only folder must stay writable until then).
"""

import bisect
import ctypes
import errno
import hashlib
import logging
import mmap
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, cast

import blake3

from workers.errors import BackfleetError, ConfigError, IntegrityError, SourceError
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources.base import CHUNK_SIZE, Dump, ReadableStream, RestoreStream, ScratchRestore
from workers.sources.channel import ChunkChannel
from workers.sources.direct_read import CacheAwareReader
from workers.sources.direct_write import DIRECT_MIN_SIZE, DirectFile, aligned_buffer

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

log = logging.getLogger(__name__)

# How long the dump's exit waits for the tar thread once the reader is closed.
JOIN_TIMEOUT = 30.0
# Restores read with tarfile's stream mode, which re-slices its buffer on every
# read, so a large bufsize costs time quadratically (1 MiB: ~230 MB/s, 16 KiB:
# ~2 GB/s). Dumps avoid the stream mode altogether (see _write_tar).
TAR_BUFSIZE = 16 * 1024
# A large file's bytes are taken from tarfile in pieces of this size.
EXTRACT_READ_SIZE = 256 * 1024
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # file names that are not UTF-8 round-trip as their bytes
# Modes must come back exactly; our own check below guards the paths.
_TRUSTED: dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)

# Per-file content hashes, by the name the manifest records them under
# (`files_<name>`). New backups use BLAKE3: cryptographic like SHA-256 and about
# three times its speed here (4.2 against 1.3 GB/s), which the backup pays on
# every byte. Manifests written before it carry `files_sha256`.
FILE_HASHES: dict[str, Callable[[], Any]] = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
FILE_HASH = "blake3"

# A path's place in the walk: its components below the root, as bytes; () is the root.
Key = tuple[bytes, ...]
# Folders whose owner, mtime and mode are set once every volume is extracted.
_Folders = list[tuple[tarfile.TarFile, tarfile.TarInfo]]


class DirectorySource:
    kind: ClassVar[str] = "directory"
    format: ClassVar[str] = "tar"
    volumes: ClassVar[bool] = True
    no_restore_test: ClassVar[str | None] = None  # per volume: files, bytes, files digest

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
    @contextmanager
    def restore_test_target(cls, spec: ServiceSpec, scratch: Path) -> Iterator[ScratchRestore]:
        """A scratch folder; per volume, the file count, bytes and the digest of every
        file's path, size and content hash must be those recorded."""
        target = scratch / "tree"
        yield ScratchRestore(cls(target), lambda facts: check_tree(target, facts))

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
        """Resolve what a killed restore left beside the target (see the module's docstring)."""
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


# --- dump ---
def encode_position(key: Key) -> str:
    """An entry's position as a JSON-safe string: the hex of its relative path's bytes."""
    return (b"/".join(key) or b".").hex()


def decode_position(position: str) -> Key:
    try:
        raw = bytes.fromhex(position)
    except ValueError:
        raise SourceError(f"{position!r} is not a volume position") from None
    if raw == b".":
        return ()
    key = tuple(raw.split(b"/"))
    if any(part in (b"", b".", b"..") for part in key):
        raise SourceError(f"{position!r} is not a volume position")
    return key


class _Walk:
    """The entries of a tree in walk order, from just after `after` (None: from the root).

    `next()` gives the next entry's key; the caller `enter()`s each folder it archived.
    Subtrees wholly before `after` are never listed; the folders holding `after` are
    listed but not given again.
    """

    def __init__(self, root: bytes, after: Key | None) -> None:
        self.root, self.after = root, after
        self._pending: list[tuple[Key, bool]] = [((), after is None)]  # a stack: (key, give?)

    def next(self) -> Key | None:
        while self._pending:
            key, give = self._pending.pop()
            if give:
                return key
            self.enter(key)  # the root or a folder holding `after`: only what follows it
        return None

    def enter(self, key: Key) -> None:
        after = self.after
        for name in sorted(_list_folder(os.path.join(self.root, *key)), reverse=True):
            child = (*key, name)
            if after is None or child > after:
                self._pending.append((child, True))
            elif child == after[: len(child)]:
                self._pending.append((child, False))


def _list_folder(path: bytes) -> list[bytes]:
    """A folder's names; none if it is gone or no longer a folder (a link is not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since it was archived
            return []
        raise
    try:
        return [os.fsencode(name) for name in os.listdir(fd)]
    finally:
        os.close(fd)


def _arcname(key: Key) -> str:
    return os.path.join(".", *(os.fsdecode(part) for part in key))


@dataclass(frozen=True)
class _Limits:
    """Which entries a dump holds: after `after`, and up to `until` or `max_bytes` of files."""

    after: Key | None = None
    until: Key | None = None
    max_bytes: int | None = None


def _write_tar(
    root: str,
    out: ChunkChannel,
    facts: dict[str, Any],
    failures: list[BaseException],
    limits: _Limits,
    direct_reads: bool = False,
) -> None:
    # One page-aligned buffer for the direct reads of every large file of this dump.
    buffer = aligned_buffer() if direct_reads else None
    try:
        # Plain "w" mode on a writer that knows its position: file data goes out in
        # CHUNK_SIZE pieces, without the stream mode's re-buffering.
        with tarfile.TarFile(
            fileobj=out,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            copybufsize=CHUNK_SIZE,
            encoding=_ENCODING,
            errors=_ERRORS,
        ) as tar:
            _add_tree(tar, root, facts, limits, buffer)
    except BaseException as exc:  # the dump's context exit reports it
        failures.append(exc)
    finally:
        if buffer is not None:
            buffer.close()
        with suppress(BrokenPipeError):  # the reader stopped first
            out.finish()


def _add_tree(
    tar: tarfile.TarFile,
    root: str,
    facts: dict[str, Any],
    limits: _Limits,
    buffer: mmap.mmap | None = None,
) -> None:
    """Archive the entries after `limits.after`, up to `limits.until` (inclusive) or else
    stopping before the file that overflows `limits.max_bytes`.

    With `buffer`, files of DIRECT_MIN_SIZE and more are read through it (direct_read.py)."""
    broot = os.fsencode(root)
    walk = _Walk(broot, limits.after)
    files = FileDigest()
    max_bytes = limits.max_bytes
    try:
        while (key := walk.next()) is not None:
            if limits.until is not None and key > limits.until:
                facts["last"] = encode_position(limits.until)  # even if it is gone now
                return  # the planned end: the next volume starts after `until`
            path = os.fsdecode(os.path.join(broot, *key))
            try:
                info = tar.gettarinfo(path, _arcname(key))
                if info is None:  # a socket: nothing a tar can hold
                    continue
                size = info.size if info.isreg() else 0
                full = (
                    max_bytes is not None and facts["bytes"] and facts["bytes"] + size > max_bytes
                )
                if full and limits.until is None:
                    return  # the volume is full: this entry starts the next one
                # tarfile would write str(float): ~0.1 µs off. The exact decimal is valid PAX too.
                stat_result = os.lstat(path)
                info.pax_headers = {
                    **info.pax_headers,
                    "mtime": _decimal_seconds(stat_result.st_mtime_ns),
                }
                if info.isreg():
                    sha = _add_file(tar, info, path, files.new_hash(), buffer)
                    files.add(key, info.size, sha, linked=stat_result.st_nlink > 1)
                    facts["files"] += 1
                    facts["bytes"] += info.size
                else:
                    tar.addfile(info)
                    if info.islnk():  # a second name of a file: restored as a file too
                        files.add_link(key, info.linkname)
                # tarfile keeps every member it writes; memory would grow with the tree's entries.
                tar.members.clear()  # type: ignore[attr-defined]
            except FileNotFoundError:
                continue  # removed while we walked a live tree: not part of this backup
            if max_bytes is not None:
                facts["last"] = encode_position(key)
            if info.isdir():
                walk.enter(key)
        if limits.until is not None:
            facts["last"] = encode_position(limits.until)  # the walk ended before `until`
        elif max_bytes is not None:
            facts["final"] = True
    finally:
        facts[files.field] = files.hexdigest()


class FileDigest:
    """A hash over `path NUL size NUL hash-of-content LF` of every regular file, in walk order.

    Recorded per volume as `files_<algorithm>` (`files_blake3`), it pins down the
    file list, sizes and per-file contents without growing the manifest with the
    tree: a test restore recomputes it over the restored tree
    (workers/operations/restore_test.py). Both levels use the same algorithm.
    """

    def __init__(self, algorithm: str = FILE_HASH) -> None:
        self.new_hash = FILE_HASHES[algorithm]
        self.field = f"files_{algorithm}"
        self.digest = self.new_hash()
        self.linked: dict[str, tuple[int, str]] = {}  # arcname -> (size, sha) of multi-link files

    def add(self, key: Key, size: int, sha: str, *, linked: bool = False) -> None:
        self.digest.update(b"/".join(key) + b"\0%d\0" % size + sha.encode() + b"\n")
        if linked:
            self.linked[_arcname(key)] = (size, sha)

    def add_link(self, key: Key, target: str) -> None:
        if target in self.linked:
            size, sha = self.linked[target]
            self.add(key, size, sha)

    def hexdigest(self) -> str:
        return str(self.digest.hexdigest())


def _add_file(
    tar: tarfile.TarFile,
    info: tarfile.TarInfo,
    path: str,
    digest: Any,
    buffer: mmap.mmap | None = None,
) -> str:
    """Archive one regular file; returns the hex `digest` of the content archived."""
    # O_NONBLOCK|O_NOFOLLOW: a file swapped for a FIFO or a link since lstat cannot stall us.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise FileNotFoundError(path)  # replaced by something else: skip it
        if buffer is None or status.st_size < DIRECT_MIN_SIZE:
            tar.addfile(info, _HashingFile(file, digest))  # type: ignore[arg-type]
        else:
            with CacheAwareReader(fd, status.st_size, buffer) as reader:
                tar.addfile(info, _HashingFile(reader, digest))  # type: ignore[arg-type]
        return str(digest.hexdigest())


class _HashingFile:
    """Hashes what tarfile reads (hashlib and blake3 release the GIL on large chunks)."""

    def __init__(self, file: ReadableStream, digest: Any) -> None:
        self.file, self.digest = file, digest

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


def _decimal_seconds(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    seconds, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{seconds}.{fraction:09d}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError):
        return "the archive was not read to the end"
    return str(exc) or type(exc).__name__


# --- restore ---
class _LeftOut:
    """What a restore left out of the tree: special files, and setuid/setgid bits."""

    def __init__(self) -> None:
        self.names: set[str] = set()  # special members skipped (so are hard links to them)
        self.stripped = 0

    def keep(self, member: tarfile.TarInfo) -> bool:
        """False for a member not to extract; clears the privilege bits of the others."""
        special = member.ischr() or member.isblk() or member.isfifo()
        if special or (member.islnk() and os.path.normpath(member.linkname) in self.names):
            self.names.add(os.path.normpath(member.name))
            return False
        # A setgid folder only sets the group of new files (`git init --shared`): it stays.
        bits = stat.S_ISUID if member.isdir() else stat.S_ISUID | stat.S_ISGID
        if member.mode & bits:
            member.mode &= ~bits
            self.stripped += 1
        return True

    def report(self, target: Path) -> None:
        if self.names or self.stripped:
            log.warning(
                "restored %s without %d device node(s), FIFO(s) and links to them, and with "
                "the setuid/setgid bits of %d file(s) cleared (`special_files = true` keeps them)",
                target,
                len(self.names),
                self.stripped,
            )


def _extract(
    stream: RestoreStream,
    staging: str,
    target: Path,
    folders: _Folders,
    *,
    direct_writes: bool,
    left_out: _LeftOut | None = None,
) -> None:
    """Extract one volume; folders are only created (see _set_folder_attributes).

    With `left_out`, device nodes and FIFOs are skipped and setuid/setgid bits cleared.
    """
    real_staging = os.path.realpath(staging)
    try:
        with _Extractor.open(
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            bufsize=TAR_BUFSIZE,
            encoding=_ENCODING,
            errors=_ERRORS,
            errorlevel=2,  # a mode or mtime that cannot be set fails the restore
        ) as tar:
            tar.direct_writes = direct_writes
            for member in tar:
                check_member(member, real_staging)
                if left_out is not None and not left_out.keep(member):
                    continue
                tar.extract(member, staging, set_attrs=not member.isdir(), **_TRUSTED)
                if member.isdir():
                    folders.append((tar, member))
                elif member.issym():  # tarfile sets no mtime on a symlink (utime follows it)
                    ns = _mtime_ns(member)
                    path = os.path.join(staging, member.name)
                    os.utime(path, ns=(ns, ns), follow_symlinks=False)
            # tarfile keeps every member it reads (typeshed omits `members`); folders stay listed.
            tar.members.clear()  # type: ignore[attr-defined]
    except SourceError:
        stream.verify()  # a tampered artifact explains a refused member best
        raise
    except BackfleetError:  # corrupt artifact, store trouble: already the right error
        raise
    except Exception as exc:
        stream.verify()  # a tampered artifact often breaks the tar first: say so if it is
        raise SourceError(f"could not extract the backup of {target}: {_describe(exc)}") from None


def _set_folder_attributes(folders: _Folders, staging: str) -> None:
    """Owner, mtime and mode of every folder, deepest first, once all volumes are in."""
    for tar, member in sorted(folders, key=lambda folder: folder[1].name, reverse=True):
        path = os.path.join(staging, member.name)
        if not stat.S_ISDIR(os.lstat(path).st_mode):  # never chmod through a link
            raise SourceError(f"refusing tar member {member.name!r}: no longer a folder")
        try:
            tar.chown(member, path, numeric_owner=False)
            tar.utime(member, path)
            tar.chmod(member, path)
        except tarfile.ExtractError as exc:
            raise SourceError(f"could not restore folder {member.name!r}: {exc}") from None


class _Extractor(tarfile.TarFile):
    """tarfile's extraction, but mtimes come from the exact PAX record (not tarfile's
    float) and large files are written with O_DIRECT (workers/sources/direct_write.py)."""

    direct_writes = True
    _direct_buffer: mmap.mmap | None = None

    def makefile(self, tarinfo: tarfile.TarInfo, targetpath: "StrOrBytesPath") -> None:
        if not self.direct_writes or tarinfo.sparse is not None or tarinfo.size < DIRECT_MIN_SIZE:
            super().makefile(tarinfo, targetpath)
            return
        if self._direct_buffer is None:
            self._direct_buffer = aligned_buffer()
        source = self.fileobj
        assert source is not None
        source.seek(tarinfo.offset_data)
        with DirectFile(targetpath, self._direct_buffer) as target:
            left = tarinfo.size
            while left:
                piece = source.read(min(left, EXTRACT_READ_SIZE))
                if not piece:
                    raise tarfile.ReadError("unexpected end of data")  # as tarfile says it
                target.write(piece)
                left -= len(piece)

    def __exit__(self, *exc_info: Any) -> None:
        # Here, not in close(): tarfile skips close() when the block raised.
        try:
            super().__exit__(*exc_info)
        finally:
            if self._direct_buffer is not None:
                self._direct_buffer.close()
                self._direct_buffer = None

    def utime(self, tarinfo: tarfile.TarInfo, targetpath: "StrOrBytesPath") -> None:
        ns = _mtime_ns(tarinfo)
        try:
            os.utime(targetpath, ns=(ns, ns))
        except OSError as exc:
            raise tarfile.ExtractError("could not change modification time") from exc


def _mtime_ns(member: tarfile.TarInfo) -> int:
    try:
        return int(Decimal(member.pax_headers["mtime"]).scaleb(9).to_integral_value())
    except (KeyError, InvalidOperation):  # a tar from elsewhere: its float will do
        return int(member.mtime * 1_000_000_000)


def check_member(member: tarfile.TarInfo, staging: str) -> None:
    """Refuse a member that would land, or hard-link to, anywhere outside `staging`.

    `staging` must be a real path; links extracted before this member are followed,
    so a symlink member cannot redirect a later write.
    """
    _check_inside(member.name, staging, member.name)
    if member.islnk():
        _check_inside(member.linkname, staging, member.name)


def _check_inside(name: str, staging: str, member: str) -> None:
    if not name or os.path.isabs(name) or ".." in name.split("/"):
        raise SourceError(f"refusing tar member {member!r}: {name!r} leaves the target")
    real = os.path.realpath(os.path.join(staging, name))
    if real != staging and not real.startswith(staging + os.sep):
        raise SourceError(f"refusing tar member {member!r}: {name!r} resolves outside the target")


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.backfleet-restore-"


def _old_prefix(target: Path) -> str:
    return f".{target.name}.backfleet-old-"


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(f"{_old_prefix(target)}{secrets.token_hex(8)}")
    try:
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        if exchange(staging, target):
            old = staging  # one atomic step: the staging name now holds the previous tree
        else:
            # Two renames: the target is missing for an instant, never half restored;
            # a worker killed in that instant is undone by recover_target().
            os.rename(target, old)
            try:
                os.rename(staging, target)
            except BaseException:
                os.rename(old, target)
                raise
    except OSError as exc:
        raise SourceError(f"could not swap the restored copy into {target}: {exc}") from None
    try:
        _remove_tree(old)
    except OSError:  # the restore itself succeeded; the leftover is only disk space
        log.warning("restored %s but could not remove the previous copy %s", target, old)


# renameat2(2) flag and "relative to the working directory" (linux/fcntl.h, linux/fs.h).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# The kernel or filesystem cannot exchange: fall back to two renames.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        if code in _NO_EXCHANGE:
            return False
        raise OSError(code, os.strerror(code), str(first), None, str(second))
    return True


@cache
def _renameat2() -> Any:
    """libc's renameat2 (glibc 2.28+, musl 1.2.4+), or None where it has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    c_int, path = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [c_int, path, c_int, path, ctypes.c_uint]
    function.restype = c_int
    return function


def recover_target(target: Path) -> None:
    """Undo what a restore killed mid-way left beside `target` (held under its namespace lock).

    If the target is missing and a tree renamed aside by the two-rename swap is
    there, it goes back: that is the data before the restore. Then every
    staging folder (partial, verified but not swapped, or the previous tree
    after an exchange) and every other tree renamed aside is removed.
    """
    parent = target.parent
    if not parent.is_dir():
        return
    names = os.listdir(parent)
    olds = sorted(n for n in names if n.startswith(_old_prefix(target)))
    if olds and not os.path.lexists(target):
        back = parent / olds.pop(0)  # one at most: a restore puts it back before it goes on
        os.rename(back, target)
        log.warning("put back %s, renamed aside by a restore that was killed", target)
    leftovers = [n for n in names if n.startswith(_staging_prefix(target))] + olds
    for name in leftovers:
        log.warning("removing %s, left by a restore that was killed", parent / name)
        _remove_tree(parent / name)


def _remove_quietly(path: str) -> None:
    try:
        _remove_tree(path)
    except OSError:  # the original failure matters more than the cleanup's
        log.exception("could not remove the restore staging folder %s", path)


def _remove_tree(path: str | Path) -> None:
    """rmtree that copes with folders restored without write permission (e.g. 0o500)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except PermissionError:
        os.chmod(path, stat.S_IRWXU)
        for parent, folders, _files in os.walk(path):
            for folder in folders:
                full = os.path.join(parent, folder)
                if not os.path.islink(full):  # never chmod through a link
                    os.chmod(full, stat.S_IRWXU)
        shutil.rmtree(path)


# --- the test restore's check (see DirectorySource.restore_test_target) ---


def check_tree(root: Path, facts: Sequence[Mapping[str, Any]]) -> None:
    """Raise IntegrityError unless each volume restored under `root` is as recorded."""
    algorithm = recorded_file_hash(facts[0])
    found = tree_facts(root, facts, algorithm or FILE_HASH)
    for number, (recorded, (files, size, digest)) in enumerate(zip(facts, found, strict=True)):
        where = f"volume {number + 1}"
        if (files, size) != (recorded.get("files"), recorded.get("bytes")):
            raise IntegrityError(
                f"{where}: restored {files} files of {size} bytes, the manifest says "
                f"{recorded.get('files')} files of {recorded.get('bytes')} bytes"
            )
        if algorithm is not None and digest != recorded.get(f"files_{algorithm}"):
            raise IntegrityError(f"{where}: the restored files' names, sizes or contents differ")


def recorded_file_hash(facts: Mapping[str, Any]) -> str | None:
    """The per-file hash a directory volume's facts were recorded with, if any."""
    return next((name for name in FILE_HASHES if f"files_{name}" in facts), None)


def tree_facts(
    root: Path, facts: Sequence[Mapping[str, Any]], algorithm: str = FILE_HASH
) -> list[tuple[int, int, str]]:
    """(files, bytes, files digest) per volume, walking the tree as the backup did."""
    # Volume k holds the entries after volume k-1's `last` up to its own `last`.
    bounds: list[Key] = [decode_position(str(f["last"])) for f in facts[:-1]]
    tallies = [_Tally(algorithm) for _ in facts]
    broot = os.fsencode(root)
    walk = _Walk(broot, None)
    while (key := walk.next()) is not None:
        path = os.path.join(broot, *key)
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            walk.enter(key)
        if stat.S_ISREG(mode):
            tallies[bisect.bisect_left(bounds, key)].add(key, path)
    return [(t.files, t.size, t.digest.hexdigest()) for t in tallies]


class _Tally:
    def __init__(self, algorithm: str) -> None:
        self.files, self.size, self.digest = 0, 0, FileDigest(algorithm)

    def add(self, key: Key, path: bytes) -> None:
        size, content = _file_hash(path, self.digest.new_hash())
        self.files += 1
        self.size += size
        self.digest.add(key, size, content)


def _file_hash(path: bytes, digest: Any) -> tuple[int, str]:
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
