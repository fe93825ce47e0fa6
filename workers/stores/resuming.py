"""A download stream that survives dropped connections by asking again from the last byte.

Both network stores use it. A store gives `open_range(offset)`, which opens the
object from `offset` on (`Range: bytes=<offset>-`) and returns something with
`read(n)` and `close()` whose failures are already mapped to TransientError.
After one, the reader closes the broken stream and opens a new one at the first
byte it has not yet handed out, so a download never starts over. Failures in a
row without a byte of progress are bounded by the retry policy; any progress
resets the count, so a flaky but moving download always finishes.
"""

import io
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol

from workers.errors import TransientError
from workers.retry import RetryPolicy

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

READ_BUFFER = 1024 * 1024  # what open_read's buffered wrapper asks the network for at once


class RangeStream(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class ResumingReader(io.RawIOBase):
    """Raw stream of `size` bytes; re-opens at the current offset after a TransientError."""

    def __init__(
        self,
        open_range: Callable[[int], RangeStream],
        *,
        size: int,
        policy: RetryPolicy,
        what: str,
        first: RangeStream | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self._open_range = open_range
        self._stream = first
        self._policy = policy
        self._what = what
        self._sleep = sleep
        self.size = size
        self.offset = 0
        self.interruptions = 0  # transient failures survived
        self._opens = 0 if first is None else 1

    @property
    def resumes(self) -> int:
        """How many times the download was opened again (successfully) after a failure."""
        return max(0, self._opens - 1)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "WriteableBuffer", /) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self.offset)
        if wanted <= 0:
            self._drop()  # done: give the connection back early
            return 0
        failures = 0
        while True:
            try:
                data = self._read(wanted)
            except TransientError as exc:
                self._drop()
                failures += 1
                self.interruptions += 1
                if failures >= self._policy.attempts:
                    raise TransientError(
                        f"{self._what}: no progress at byte {self.offset} of {self.size} "
                        f"after {failures} attempts; last: {exc}"
                    ) from exc
                pause = self._policy.delay(failures)
                log.warning(
                    "%s: interrupted at byte %d of %d, resuming in %.1f s: %s",
                    self._what,
                    self.offset,
                    self.size,
                    pause,
                    exc,
                )
                self._sleep(pause)
                continue
            count = len(data)
            view[:count] = data
            self.offset += count
            return count

    def _read(self, wanted: int) -> bytes:
        if self._stream is None:
            self._stream = self._open_range(self.offset)
            self._opens += 1
        data = self._stream.read(wanted)[:wanted]
        if not data:
            # A clean close before the end is as broken as a reset one.
            raise TransientError(f"connection closed at byte {self.offset} of {self.size}")
        return data

    def _drop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # a broken connection may fail to close too; it is dropped anyway
                log.debug("closing a broken download stream failed", exc_info=True)

    def close(self) -> None:
        self._drop()
        super().close()


def resuming_stream(
    open_range: Callable[[int], RangeStream],
    *,
    size: int,
    policy: RetryPolicy,
    what: str,
    first: RangeStream | None = None,
) -> BinaryIO:
    """The buffered binary stream open_read returns: memory stays one read buffer."""
    raw = ResumingReader(open_range, size=size, policy=policy, what=what, first=first)
    return io.BufferedReader(raw, buffer_size=READ_BUFFER)
