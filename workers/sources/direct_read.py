"""Read a file being archived from the page cache where it is cached, with O_DIRECT where not.

Why: a backup reads every byte of the tree once and never again. Reading a byte
the page cache does not hold through the cache first claims a page for it,
which the kernel must find and fill; on a VM whose idle memory went back to the
host, that costs ~0.9 s of kernel time per GiB (bench/RESULTS.md), and it evicts
what the host's services had cached to keep bytes nobody will read. A direct
read puts them straight into one reused, page-aligned buffer instead. Bytes
that are cached are read as before: a copy from memory, no disk.

What is cached is asked with cachestat(2) (Linux 6.5 and later), which reports
the page cache's state without changing it (a read with RWF_NOWAIT would start
readahead into the cache). A file wholly cached or wholly not is asked about
once; a partly cached one, chunk by chunk. Where cachestat is missing (older
kernels, other systems) or the filesystem refuses O_DIRECT (EINVAL), reads are
buffered, as they were before. BACKUP_DIRECT_READS=false turns it off.
"""

import ctypes
import errno
import fcntl
import functools
import mmap
import os
import platform
from typing import Any, Literal

from workers.sources.direct_write import ALIGNMENT, O_DIRECT

PAGE_SIZE = mmap.PAGESIZE
# cachestat's number in the syscall tables of the architectures we run on.
_CACHESTAT = {"x86_64": 451, "aarch64": 451}.get(platform.machine())


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")
    ]


@functools.cache
def _syscall() -> Any:
    """libc's syscall(), or None where cachestat cannot be called or its answer would
    not be used (no O_DIRECT)."""
    if _CACHESTAT is None or not O_DIRECT:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None


def cached_pages(fd: int, offset: int, length: int) -> int | None:
    """How many pages of [offset, offset + length) are in the page cache (length 0: to
    the end); None when this kernel cannot tell."""
    syscall = _syscall()
    if syscall is None:
        return None
    span, stat = _Range(offset, length), _CacheStat()
    if syscall(_CACHESTAT, fd, ctypes.byref(span), ctypes.byref(stat), 0) != 0:
        return None  # ENOSYS before Linux 6.5; EOPNOTSUPP on some filesystems
    return int(stat.nr_cache)


def _pages(length: int) -> int:
    return -(-length // PAGE_SIZE)


# How a file is read: all through the cache (it is all cached, or the kernel cannot
# tell), all direct (none of it is cached), or asking chunk by chunk (partly cached).
Mode = Literal["buffered", "direct", "per chunk"]
BUFFERED: Mode = "buffered"
DIRECT: Mode = "direct"
PER_CHUNK: Mode = "per chunk"


def _mode_for(cached: int | None, size: int) -> Mode:
    if cached is None or cached >= _pages(size):
        return BUFFERED
    return DIRECT if cached == 0 else PER_CHUNK


class CacheAwareReader:
    """Sequential reads of an open regular file of `size` bytes (from its fstat), through
    `buffer` (from direct_write.aligned_buffer; one file at a time uses it).

    The caller keeps `fd` open and closes it; the reader may set O_DIRECT on it.
    """

    def __init__(self, fd: int, size: int, buffer: mmap.mmap) -> None:
        self.fd, self.size = fd, size
        self._view = memoryview(buffer)
        self.offset = 0
        self._direct_set = False
        self._mode = _mode_for(cached_pages(fd, 0, 0), size)
        self.direct_bytes = 0  # read past the page cache (the tests check it)

    def read(self, size: int = -1, /) -> bytes:
        """`size` bytes (all the rest when size < 0), fewer only at the end of the file."""
        if size < 0:
            size = max(self.size - self.offset, 0)
        pieces: list[bytes] = []
        while size > 0:
            asked = min(size, len(self._view))
            piece = self._read_piece(asked)
            pieces.append(piece)
            size -= len(piece)
            if len(piece) < asked:
                break  # the end of the file
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def close(self) -> None:
        self._view.release()

    def __enter__(self) -> "CacheAwareReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_piece(self, length: int) -> bytes:
        if self._wants_direct(length):
            try:
                self._set_direct(True)
                whole_blocks = self._view[: -(-length // ALIGNMENT) * ALIGNMENT]
                got = os.preadv(self.fd, [whole_blocks], self.offset)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._mode = BUFFERED  # this filesystem (or device) refuses O_DIRECT
            else:
                got = min(got, length)
                self.offset += got
                self.direct_bytes += got
                return bytes(self._view[:got])
        self._set_direct(False)
        data = os.pread(self.fd, length, self.offset)
        self.offset += len(data)
        return data

    def _wants_direct(self, length: int) -> bool:
        if self._mode == BUFFERED or self.offset % ALIGNMENT:
            return False
        if self._mode == DIRECT:
            return True
        cached = cached_pages(self.fd, self.offset, length)
        return cached is not None and cached < _pages(min(length, self.size - self.offset))

    def _set_direct(self, on: bool) -> None:
        if on == self._direct_set:
            return
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | O_DIRECT if on else flags & ~O_DIRECT)
        self._direct_set = on
