"""What a command service's tools share beyond process.py: a staged, verified input; a tool
run with a time limit and its stdout kept; and the `name count` lines a tool prints.

Counts (`count_command` before a dump, `test_restore_command` in a drill) are one line per
thing counted: a name, whitespace, a non-negative integer (`people\t3004`, what
`mariadb --batch --skip-column-names` prints for `SELECT table_name, COUNT(*)`). The
count is the last word, so a name may hold spaces.
"""

import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from workers.errors import SourceError
from workers.sources.base import CHUNK_SIZE, RestoreStream, iter_chunks
from workers.sources.process import StderrTail, spawn, stop_group, wait_for_exit

log = logging.getLogger(__name__)
# The stdout a counting tool may print that is kept (a table per line: ~40 bytes each).
STDOUT_LIMIT = 1024 * 1024


@contextmanager
def staged(
    stream: RestoreStream, *, directory: Path | None, prefix: str, suffix: str
) -> Iterator[IO[bytes]]:
    """The whole stream in a private file (0600), verified against the manifest, open for
    reading from its start; the file is removed on exit whatever happened."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=CHUNK_SIZE) as out:
            for chunk in iter_chunks(stream):
                out.write(chunk)
        stream.verify()  # nothing reads the file unless every stored byte matched
        with open(name, "rb") as staged_in:
            yield staged_in
    finally:
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        except OSError:  # the restore's own outcome matters more than the cleanup's
            log.exception("could not remove the staged restore file %s", name)


@dataclass(frozen=True)
class ToolRun:
    returncode: int
    stdout: str  # its last STDOUT_LIMIT bytes
    stderr: StderrTail


def run_bounded(
    command: Sequence[str], *, env: Mapping[str, str], stdin: Any, timeout: float
) -> ToolRun:
    """Run `command` to its end, at most `timeout` seconds: past it, its whole process group
    is stopped and SourceError says so. Anything that stops the caller stops it too."""
    process = spawn(command, env=dict(env), stdin=stdin, stdout=subprocess.PIPE)
    out = StderrTail(process.stdout, limit=STDOUT_LIMIT)
    errors = StderrTail(process.stderr)
    try:
        wait_for_exit(process, timeout)
    except subprocess.TimeoutExpired:
        stop_group(process)
        raise SourceError(f"{command[0]} timed out after {timeout:g} s, stopped") from None
    except BaseException:  # e.g. the task's time limit: the tool must not run on
        stop_group(process)
        raise
    return ToolRun(process.returncode, out.text(), errors)


def parse_counts(text: str, what: str) -> dict[str, int]:
    """`name count` lines (blank lines ignored) as a dict; SourceError names a bad line."""
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not parts[1].isdigit() or not parts[0].strip():
            raise SourceError(
                f"{what} printed line {number}, {line[:80]!r}, where a `name count` line "
                "(a name, whitespace, a whole number) was expected"
            )
        counts[parts[0].strip()] = int(parts[1])
    return counts
