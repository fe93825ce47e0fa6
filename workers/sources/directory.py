"""A directory: a streaming PAX tar out; extracted beside the target, verified, swapped in.

Dump: a thread writes a PAX tar of the tree into a pipe whose read end is the
dump's stream, so memory stays at a few buffers whatever the tree's size. The
root goes first as ".", so its own mode and mtime travel too. PAX keeps any
name Linux allows (bytes that are not UTF-8 travel raw, via surrogateescape),
long names, symlink targets and hard links; mtimes travel as exact decimal
nanoseconds in the standard PAX `mtime` record and are set back to the nanosecond.

Restore: every member is checked (no absolute name, no `..`, nothing that
resolves outside the staging folder through a link extracted before it) and
extracted into `.<name>.backfleet-restore-<random>` beside the target. Only
after `verify()` is the target renamed aside, the staging folder renamed into
its place, and the old tree removed. Any failure removes the staging folder
and leaves the target as it was.
"""

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, cast

from workers.errors import BackfleetError, SourceError
from workers.sources.base import CHUNK_SIZE, Dump, RestoreStream

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

log = logging.getLogger(__name__)

# How long the dump's exit waits for the tar thread once the reader is closed.
JOIN_TIMEOUT = 30.0
# tarfile re-slices its stream buffer on every write and read, so a large bufsize
# costs time quadratically (1 MiB: ~230 MB/s, 16 KiB: ~2 GB/s); the 1 MiB
# buffered pipe ends make the large system calls instead.
TAR_BUFSIZE = 16 * 1024
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # file names that are not UTF-8 round-trip as their bytes
# Modes must come back exactly; our own check below guards the paths.
_TRUSTED: dict[str, Any] = (
    {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
)


class DirectorySource:
    kind: ClassVar[str] = "directory"
    format: ClassVar[str] = "tar"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        root = self.path
        if not root.is_dir():
            raise SourceError(f"directory {root} does not exist (or is not a directory)")
        facts: dict[str, Any] = {"kind": self.kind, "files": 0, "bytes": 0}
        failures: list[BaseException] = []
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # Linux only; a nicety
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, CHUNK_SIZE)
        reader = os.fdopen(read_fd, "rb", buffering=CHUNK_SIZE)
        args = (os.path.realpath(root), write_fd, facts, failures)
        writer = threading.Thread(target=_write_tar, args=args, name="tar-dump", daemon=True)
        try:
            writer.start()
        except BaseException:
            os.close(write_fd)
            reader.close()
            raise
        try:
            yield Dump(stream=reader, facts=facts)
        finally:
            reader.close()  # a writer still running gets EPIPE and ends
            writer.join(JOIN_TIMEOUT)
        if writer.is_alive():
            raise SourceError(f"archiving {root} did not stop within {JOIN_TIMEOUT:.0f}s")
        if failures:
            raise SourceError(f"could not archive {root}: {_describe(failures[0])}")

    def restore(self, stream: RestoreStream) -> None:
        target = Path(os.path.realpath(self.path))  # a symlinked path keeps its link
        if os.path.lexists(target) and not target.is_dir():
            raise SourceError(f"cannot restore into {target}: it exists and is not a directory")
        if os.path.ismount(target):  # a mount point cannot be renamed aside
            raise SourceError(
                f"cannot restore into {target}: it is a mount point; "
                "configure a folder inside it as the service's path"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=f".{target.name}.backfleet-restore-", dir=target.parent)
        try:
            _extract(stream, staging, target)
            stream.verify()  # nothing below runs unless every stored byte matched
            _swap(Path(staging), target)
        except BaseException:
            _remove_quietly(staging)
            raise


# --- dump ---
def _write_tar(root: str, fd: int, facts: dict[str, Any], failures: list[BaseException]) -> None:
    try:
        with (
            os.fdopen(fd, "wb", buffering=CHUNK_SIZE) as out,
            tarfile.open(
                fileobj=out,
                mode="w|",
                format=tarfile.PAX_FORMAT,
                bufsize=TAR_BUFSIZE,
                encoding=_ENCODING,
                errors=_ERRORS,
            ) as tar,
        ):
            _add_tree(tar, root, facts)
    except BaseException as exc:  # the dump's context exit reports it
        failures.append(exc)


def _add_tree(tar: tarfile.TarFile, root: str, facts: dict[str, Any]) -> None:
    pending = ["."]  # a stack: depth first, names in sorted order
    while pending:
        arcname = pending.pop()
        path = os.path.join(root, arcname)
        try:
            info = tar.gettarinfo(path, arcname)
            if info is None:  # a socket: nothing a tar can hold
                continue
            # tarfile would write str(float): ~0.1 µs off. The exact decimal is valid PAX too.
            mtime = _decimal_seconds(os.lstat(path).st_mtime_ns)
            info.pax_headers = {**info.pax_headers, "mtime": mtime}
            if info.isreg():
                _add_file(tar, info, path)
                facts["files"] += 1
                facts["bytes"] += info.size
                continue
            tar.addfile(info)
            if info.isdir():
                names = sorted(os.listdir(path), reverse=True)
                pending.extend(os.path.join(arcname, name) for name in names)
        except FileNotFoundError:
            continue  # removed while we walked a live tree: not part of this backup


def _add_file(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str) -> None:
    # O_NONBLOCK|O_NOFOLLOW: a file swapped for a FIFO or a link since lstat cannot stall us.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(path)  # replaced by something else: skip it
        tar.addfile(info, file)


def _decimal_seconds(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    seconds, fraction = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{seconds}.{fraction:09d}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BrokenPipeError):
        return "the archive was not read to the end"
    return str(exc) or type(exc).__name__


# --- restore ---
def _extract(stream: RestoreStream, staging: str, target: Path) -> None:
    try:
        with _ExactTimes.open(
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            bufsize=TAR_BUFSIZE,
            encoding=_ENCODING,
            errors=_ERRORS,
            errorlevel=2,  # a mode or mtime that cannot be set fails the restore
        ) as tar:
            tar.extractall(staging, members=_checked(tar, os.path.realpath(staging)), **_TRUSTED)
    except SourceError:
        stream.verify()  # a tampered artifact explains a refused member best
        raise
    except BackfleetError:  # corrupt artifact, store trouble: already the right error
        raise
    except Exception as exc:
        stream.verify()  # a tampered artifact often breaks the tar first: say so if it is
        raise SourceError(f"could not extract the backup of {target}: {_describe(exc)}") from None


def _checked(tar: tarfile.TarFile, staging: str) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        check_member(member, staging)
        yield member
        if member.issym():  # tarfile sets no mtime on a symlink (utime would follow it)
            ns = _mtime_ns(member)
            os.utime(os.path.join(staging, member.name), ns=(ns, ns), follow_symlinks=False)


class _ExactTimes(tarfile.TarFile):
    """Sets files' and folders' mtimes from the exact PAX record, not tarfile's float."""

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


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.backfleet-old-{secrets.token_hex(8)}")
    try:
        if not os.path.lexists(target):
            os.rename(staging, target)
            return
        # Two renames: the target is missing for an instant, but never half restored.
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
