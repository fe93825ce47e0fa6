"""A restore's extraction: one volume's tar into the staging folder, every member checked
first; without `special_files`, device nodes and FIFOs are left out and setuid/setgid
bits cleared."""

import logging
import mmap
import os
import stat
import tarfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from workers.errors import BackfleetError, SourceError
from workers.sources.base import RestoreStream
from workers.sources.direct_write import DIRECT_MIN_SIZE, DirectFile, aligned_buffer
from workers.sources.directory.archive import _ENCODING, _ERRORS, _describe

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

log = logging.getLogger(__name__)

# Restores read with tarfile's stream mode, which re-slices its buffer on every
# read, so a large bufsize costs time quadratically (1 MiB: ~230 MB/s, 16 KiB:
# ~2 GB/s). Dumps avoid the stream mode altogether (see archive._write_tar).
TAR_BUFSIZE = 16 * 1024
# A large file's bytes are taken from tarfile in pieces of this size.
EXTRACT_READ_SIZE = 256 * 1024
# Modes must come back exactly; our own check below guards the paths.
_TRUSTED: dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)
# Folders whose owner, mtime and mode are set once every volume is extracted.
_Folders = list[tuple[tarfile.TarFile, tarfile.TarInfo]]


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
