"""Write a restored file with O_DIRECT: its bytes go to the disk, not the page cache.

Why: a restore writes every byte once and reads none back. Through the page
cache, each GiB claims a GiB of pages the kernel must find and fill first; on a
VM whose free memory was handed back to the host (balloon, free page
reporting), that first touch costs more than the rest of the restore (measured:
2.0 s of kernel time per GiB buffered, 0.1 s direct; bench/RESULTS.md). It also
evicts what the host's other programs had cached. O_DIRECT writes from one
reused, page-aligned buffer instead.

O_DIRECT needs the buffer's address, the file offset and each length aligned to
the device's block size; ALIGNMENT (4 KiB) covers 512-byte and 4 KiB devices. The
tail of a file that is not a whole number of blocks is written through the page
cache after clearing O_DIRECT with fcntl. A filesystem that refuses O_DIRECT
(EINVAL at open, or at a write for a larger alignment) gets buffered writes, so
the result is the same file either way. RESTORE_DIRECT_WRITES=false turns it off
(a network filesystem may make each direct write wait for a round trip).
"""

import errno
import fcntl
import mmap
import os
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

ALIGNMENT = 4096
O_DIRECT = getattr(os, "O_DIRECT", 0)  # Linux's; elsewhere every write is buffered
# Smaller files go through the page cache: a direct write waits for the disk, and
# for a small file that wait is the whole cost, which tarfile's own writes avoid.
DIRECT_MIN_SIZE = 1024 * 1024
BUFFER_SIZE = 1024 * 1024  # a multiple of ALIGNMENT; one direct write each time it fills


def aligned_buffer(size: int = BUFFER_SIZE) -> mmap.mmap:
    """A buffer for DirectFile; reuse it for every file (its pages stay warm)."""
    if size <= 0 or size % ALIGNMENT:
        raise ValueError(f"a direct-write buffer is a positive multiple of {ALIGNMENT} bytes")
    return mmap.mmap(-1, size)  # anonymous maps are page-aligned


class DirectFile:
    """A write-only file of `path` (created or truncated, mode 0o666 less the umask),
    written through `buffer` (from aligned_buffer; one file at a time uses it)."""

    def __init__(self, path: "StrOrBytesPath", buffer: mmap.mmap) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.fd, self.direct = -1, bool(O_DIRECT)
        if self.direct:
            try:
                self.fd = os.open(path, flags | O_DIRECT, 0o666)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: this filesystem refuses O_DIRECT
                    raise
                self.direct = False
        if not self.direct:
            self.fd = os.open(path, flags, 0o666)
        self._view = memoryview(buffer)
        self._filled = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            room = len(self._view) - self._filled
            take = min(room, len(view) - done)
            self._view[self._filled : self._filled + take] = view[done : done + take]
            self._filled += take
            done += take
            if self._filled == len(self._view):
                self._flush(self._filled)
        return done

    def close(self) -> None:
        """Write what is left and close; the file then holds every byte written."""
        if self.fd < 0:
            return
        try:
            whole = self._filled - self._filled % ALIGNMENT
            if whole:
                self._flush(whole)
            if self._filled:
                self._buffered()
                self._write_all(self._view[: self._filled])
                self._filled = 0
        finally:
            self._release()

    def abandon(self) -> None:
        """Close without writing what is still buffered (the restore failed anyway)."""
        if self.fd >= 0:
            self._release()

    def __enter__(self) -> "DirectFile":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def _flush(self, length: int) -> None:
        """Write the buffer's first `length` bytes (aligned) and keep the rest at its start."""
        self._write_all(self._view[:length])
        rest = self._filled - length
        if rest:
            self._view[:rest] = self._view[length : self._filled]
        self._filled = rest

    def _write_all(self, view: memoryview) -> None:
        while view:
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                # The device wants a larger alignment (or a short write left the
                # offset unaligned): nothing of this write landed; go on buffered.
                self._buffered()
                continue
            view = view[written:]

    def _buffered(self) -> None:
        if self.direct:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~O_DIRECT)
            self.direct = False

    def _release(self) -> None:
        fd, self.fd = self.fd, -1
        self._view.release()
        os.close(fd)
