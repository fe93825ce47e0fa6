"""pg_receivewal, PostgreSQL's own WAL receiver, as a child of the streamer.

It runs without a slot (our slot is advanced only after shipping, slot.py), with
--no-loop (the streamer decides how to go on after a failure), the conninfo without the
password on its command line and libpq's environment with it. It dies with the thread
that started it (PR_SET_PDEATHSIG), so a streamer killed with -9 leaves no receiver
behind, and leads a session of its own so that it can be stopped whole.
"""

import ctypes
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from workers.sources.process import StderrTail, exit_status, spawn, stop_group

PROGRAM = "pg_receivewal"
PR_SET_PDEATHSIG = 1
# What pg_receivewal says when the server no longer has the WAL it asked for.
WAL_REMOVED = "has already been removed"


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the child

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


class Receiver:
    def __init__(
        self,
        *,
        directory: Path,
        conninfo: str,
        env: dict[str, str],
        clean: Callable[[str], str],
        status_interval: int = 1,
    ) -> None:
        self.argv = [
            PROGRAM,
            "-D",
            str(directory),
            "-d",
            conninfo,
            "--no-loop",
            "--no-password",
            f"--status-interval={status_interval}",
        ]
        self.env, self.clean = env, clean
        self.process: subprocess.Popen[bytes] | None = None
        self._errors: StderrTail | None = None

    def start(self) -> None:
        self.process = spawn(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
        self._errors = StderrTail(self.process.stderr)

    def exited(self) -> int | None:
        """Its exit code once it ended (None: running)."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)

    def complaint(self) -> str:
        """How it ended and what it said last (redacted)."""
        code = self.exited()
        said = self._errors.text(self.clean, timeout=2.0) if self._errors is not None else ""
        how = exit_status(code) if code is not None else "running"
        return f"{PROGRAM} {how}: {said}" if said else f"{PROGRAM} {how}"

    def wal_removed(self) -> bool:
        """It failed because the server had removed the WAL it asked for."""
        return self._errors is not None and WAL_REMOVED in self._errors.text(timeout=2.0)
