"""The dump's writer: a thread archives the tree, or one volume of it, as a PAX tar into a
channel (workers/sources/channel.py) whose read end is the dump's stream."""

import mmap
import os
import stat
import tarfile
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from workers.sources.base import DUMP_CHUNK_SIZE, ReadableStream
from workers.sources.channel import ChunkChannel
from workers.sources.direct_read import CacheAwareReader
from workers.sources.direct_write import DIRECT_MIN_SIZE, aligned_buffer
from workers.sources.directory.digest import FileDigest
from workers.sources.directory.walk import Key, _arcname, _Walk, encode_position

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # file names that are not UTF-8 round-trip as their bytes


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
        # DUMP_CHUNK_SIZE pieces, without the stream mode's re-buffering.
        with tarfile.TarFile(
            fileobj=out,  # type: ignore[arg-type]
            mode="w",
            format=tarfile.PAX_FORMAT,
            copybufsize=DUMP_CHUNK_SIZE,
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
