"""Running tools (dump and restore tools, a service's hooks): starting one in a session of
its own, its output kept (bounded) for the message, clean stops of its whole process group."""

import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any

from workers.errors import SourceError
from workers.redact import redact

STDERR_TAIL_BYTES = 16 * 1024
# Bytes kept beyond a tail's limit, so a secret the cut falls inside is redacted whole.
TAIL_MARGIN = 4 * 1024
# How long a terminated tool may take to exit before it is killed.
STOP_GRACE = 5.0
# The task's thread waits for a tool in slices this long: between two, the soft time limit
# of a one-process worker (tasks/time_limits.py, raised in that thread) can land, as a
# signal lands in a prefork child's blocked read.
WAKE_EVERY = 0.5


class PolledPipe:
    """A tool's stdout whose reads wait for data in slices (WAKE_EVERY), so a tool that
    writes nothing for long does not hold the reading thread in one system call.

    Each read still returns `size` bytes but at the end (what the pipe's own reader
    returns), so the stored bytes do not depend on the pipe's timing: a resumed upload
    compares them with the parts already stored."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._poll = select.poll()
        self._poll.register(pipe.fileno(), select.POLLIN)

    def read(self, size: int = -1, /) -> bytes:
        # Readable also means the end (or an error) is there; data the reader buffered
        # ahead waits with the next bytes or the end.
        while not self._poll.poll(WAKE_EVERY * 1000):
            pass
        return self._pipe.read(size)

    def close(self) -> None:
        self._pipe.close()


def wait_for_exit(process: "subprocess.Popen[bytes]", timeout: float | None = None) -> int:
    """process.wait(timeout), in slices (WAKE_EVERY); TimeoutExpired past `timeout`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAKE_EVERY if deadline is None else min(WAKE_EVERY, deadline - time.monotonic())
        try:
            return process.wait(max(0.0, left))
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() >= deadline:
                raise


class StderrTail:
    """Reads a child's stderr (or any pipe of it) in a thread, so the child never blocks on
    it; `text()` gives its last `limit` bytes, redacted.

    `margin` more bytes are kept, so that redaction sees whole any secret the cut at
    `limit` falls inside (a secret longer than the margin is not expected)."""

    def __init__(
        self, pipe: IO[bytes] | None, limit: int = STDERR_TAIL_BYTES, margin: int = TAIL_MARGIN
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit, self._margin = limit, margin
        self._dropped = False  # the output's start is gone: the buffer may begin mid-secret
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        keep = self._limit + self._margin
        with pipe:
            while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
                self._chunks.append(chunk)
                self._size += len(chunk)
                # Whole chunks go only while at least `keep` bytes stay.
                while self._size - len(self._chunks[0]) >= keep:
                    self._size -= len(self._chunks.popleft())
                    self._dropped = True

    def text(self, clean: Callable[[str], str] | None = None, timeout: float = 5.0) -> str:
        """The last `limit` bytes, `clean`ed (redacted) BEFORE the cut, so no part of a
        secret the cut falls inside survives; a line the cut splits is left out."""
        self._thread.join(timeout)
        raw, dropped = b"".join(list(self._chunks)), self._dropped
        if dropped:  # its first bytes may be the end of a secret whose start is gone
            raw = raw[-(self._limit + self._margin) :]
        text = raw.decode("utf-8", "replace")
        cleaned = (clean(text) if clean is not None else text).encode()
        room = self._limit
        if dropped:  # never into the first `margin` bytes, however much redaction shortened
            room = max(0, min(room, len(cleaned) - self._margin))
        if len(cleaned) <= room:
            return cleaned.decode("utf-8", "replace").strip()
        cut = len(cleaned) - room
        kept = cleaned[cut:].decode("utf-8", "ignore")
        if cleaned[cut - 1 : cut] != b"\n" and "\n" in kept:
            kept = kept.split("\n", 1)[1]  # the line the cut split
        return kept.strip()


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a child that is still running, then reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class CannotStart(SourceError):
    """A tool that could not be started; `why` says so in a few words that name it."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def spawn(
    command: Sequence[str], *, env: dict[str, str], **kwargs: Any
) -> "subprocess.Popen[bytes]":
    """Start `command` (argv, no shell) leading a session of its own, so `stop_group` reaches
    every process it starts (`sh -c "a | b"` and the like). CannotStart names a tool that
    is missing or cannot be run."""
    kwargs.setdefault("stderr", subprocess.PIPE)
    program = command[0]
    try:
        return subprocess.Popen(list(command), start_new_session=True, env=env, **kwargs)
    except FileNotFoundError:
        where = "does not exist" if "/" in program else "is not on the worker's PATH"
        message = f"{program} is not installed (not found on the worker's PATH)"
        raise CannotStart(message, f"{program} {where}") from None
    except PermissionError:
        message = f"{program} cannot be run: permission denied"
        raise CannotStart(message, message) from None
    except OSError as exc:
        message = f"{program} cannot be run: {exc.strerror or exc}"
        raise CannotStart(message, message) from None


def stop_group(process: "subprocess.Popen[bytes]", grace: float = STOP_GRACE) -> None:
    """Terminate a `spawn`ed tool and everything it started, then reap it."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: "subprocess.Popen[bytes]", sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # the tool leads its own session, hence its group
    except ProcessLookupError:
        pass
    except PermissionError:  # e.g. a setuid tool: signal what we can
        process.send_signal(sig)


def exit_status(returncode: int) -> str:
    """`exit 3`, `killed by SIGTERM`: how a tool ended, for a message."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def redact_output(text: str, *, password_env: str | None, secrets: Sequence[str]) -> str:
    """A tool's output with secret-shaped values, its own password and the fleet's masked."""
    password = [os.environ.get(password_env, "")] if password_env else []
    return redact(text, [*password, *secrets])
