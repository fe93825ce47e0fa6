"""Running dump and restore tools: stderr kept (bounded) for the error message, clean stops."""

import subprocess
import threading
from collections import deque
from typing import IO

STDERR_TAIL_BYTES = 16 * 1024


class StderrTail:
    """Reads a child's stderr in a thread (so the child never blocks on it), keeping the end."""

    def __init__(self, pipe: IO[bytes] | None) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        with pipe:
            while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size > STDERR_TAIL_BYTES and len(self._chunks) > 1:
                    self._size -= len(self._chunks.popleft())

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return b"".join(self._chunks)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a child that is still running, then reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
