"""An in-process pipe of byte chunks: a producer thread writes, the pipeline reads.

It replaces an OS pipe between the tar thread and the reader: chunks are handed
over as they are (no kernel copy in and out), small writes (tar headers) are
batched, and at most `depth` chunks wait, so memory stays bounded. When the
reader closes early, a writer blocked on a full channel gets BrokenPipeError,
as it would from a pipe.
"""

import queue
import threading

_EOF = b""
_PUT_POLL_SECONDS = 0.1


class ChunkChannel:
    def __init__(self, *, depth: int = 4, batch: int = 256 * 1024) -> None:
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._batch = batch
        self._small = bytearray()
        self._position = 0
        self._chunk = b""  # the chunk being read, from `_offset` on
        self._offset = 0
        self._ended = False

    # --- the writer's side (file-like enough for tarfile's "w" mode) ---
    def write(self, data: bytes) -> int:
        size = len(data)
        self._position += size
        if size >= self._batch:
            self._flush_small()
            self._put(bytes(data))
        else:
            self._small += data
            if len(self._small) >= self._batch:
                self._flush_small()
        return size

    def tell(self) -> int:
        return self._position

    def finish(self) -> None:
        """The writer is done (or failed): send what is batched, then the end."""
        try:
            self._flush_small()
        finally:
            self._put(_EOF)

    def _flush_small(self) -> None:
        if self._small:
            self._put(bytes(self._small))
            self._small.clear()

    def _put(self, chunk: bytes) -> None:
        while True:
            if self._closed.is_set():
                raise BrokenPipeError("the reader stopped reading")
            try:
                self._queue.put(chunk, timeout=_PUT_POLL_SECONDS)
                return
            except queue.Full:
                continue

    # --- the reader's side ---
    def read(self, size: int = -1, /) -> bytes:
        """At most `size` bytes of one chunk (all of it when size < 0); b"" at the end."""
        if self._offset == len(self._chunk):
            if self._ended:
                return _EOF
            chunk = self._queue.get()
            if chunk == _EOF:
                self._ended = True
                return _EOF
            self._chunk, self._offset = chunk, 0
        start = self._offset
        end = len(self._chunk) if size < 0 else min(len(self._chunk), start + size)
        self._offset = end
        if start == 0 and end == len(self._chunk):
            return self._chunk  # a whole chunk: no copy
        # Only the piece is copied, never the rest: small reads of a big chunk stay linear.
        return self._chunk[start:end]

    def close(self) -> None:
        """The reader is done: a writer still sending gets BrokenPipeError."""
        self._closed.set()
        while True:  # wake a writer blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
