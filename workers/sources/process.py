"""Running tools (dump and restore tools, a service's hooks): starting one in a session of
its own, its output kept (bounded) for the message, clean stops of its whole process group."""

import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from typing import IO, Any

from workers.errors import SourceError
from workers.redact import redact

STDERR_TAIL_BYTES = 16 * 1024
# How long a terminated tool may take to exit before it is killed.
STOP_GRACE = 5.0


class StderrTail:
    """Reads a child's stderr (or any pipe of it) in a thread, so the child never blocks on
    it, keeping the last `limit` bytes."""

    def __init__(self, pipe: IO[bytes] | None, limit: int = STDERR_TAIL_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        with pipe:
            while chunk := pipe.read1(65536) if hasattr(pipe, "read1") else pipe.read(65536):
                self._chunks.append(chunk)
                self._size += len(chunk)
                while self._size > self._limit and len(self._chunks) > 1:
                    self._size -= len(self._chunks.popleft())

    def text(self, timeout: float = 5.0) -> str:
        self._thread.join(timeout)
        return b"".join(self._chunks)[-self._limit :].decode("utf-8", "replace").strip()


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a child that is still running, then reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(
    command: Sequence[str], *, env: dict[str, str], **kwargs: Any
) -> "subprocess.Popen[bytes]":
    """Start `command` (argv, no shell) leading a session of its own, so `stop_group` reaches
    every process it starts (`sh -c "a | b"` and the like). SourceError names a tool that
    is missing or cannot be run."""
    kwargs.setdefault("stderr", subprocess.PIPE)
    try:
        return subprocess.Popen(list(command), start_new_session=True, env=env, **kwargs)
    except FileNotFoundError:
        raise SourceError(
            f"{command[0]} is not installed (not found on the worker's PATH)"
        ) from None
    except PermissionError:
        raise SourceError(f"{command[0]} cannot be run: permission denied") from None
    except OSError as exc:
        raise SourceError(f"{command[0]} cannot be run: {exc.strerror or exc}") from None


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
