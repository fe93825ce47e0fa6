"""A write load for the restore-to-a-moment tests and bench/pitr_bench.py: pgbench at a fixed
rate, marker rows committed one by one from a thread, the markers' commit times as
PostgreSQL recorded them, and a clone of the cluster recovered to a moment by PostgreSQL
alone (to compare a restore with).

Commit times: `recovery_target_time` compares the time in each commit record. A marker's
`clock_timestamp()` is taken before its commit and the client's clock after it returns; a
target between the two would be judged wrongly by either. With track_commit_timestamp
on, `pg_xact_commit_timestamp(xmin)` is the commit record's own time (both come from the
same xactStopTimestamp), so "at or before T" is judged exactly as recovery judges it.
"""

import contextlib
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import psycopg

MARKERS = (
    "CREATE TABLE IF NOT EXISTS markers "
    "(id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
SEGMENT_NAME = re.compile(r"^[0-9A-F]{24}$")


class MarkerWriter:
    """Marker rows (`markers`: id, clock_timestamp()), one transaction each, every `every`
    seconds from a thread until stopped; `last` is the newest committed (id, its clock time
    as the row says it), `error` what stopped it early (a server killed under it is not
    an error when `expect_death`)."""

    def __init__(self, url: str, *, every: float = 0.25, expect_death: bool = False) -> None:
        self.url, self.every, self.expect_death = url, every, expect_death
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="markers")
        self.committed: list[tuple[int, datetime]] = []
        self.error: BaseException | None = None

    def __enter__(self) -> "MarkerWriter":
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(MARKERS)  # type: ignore[arg-type]
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    @property
    def last(self) -> tuple[int, datetime] | None:
        return self.committed[-1] if self.committed else None

    def _run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute("SELECT coalesce(max(id), 0) FROM markers").fetchone()
                number = int(row[0]) if row else 0
                deadline = time.monotonic()
                while not self.stop.is_set():
                    number += 1
                    done = conn.execute(
                        "INSERT INTO markers (id) VALUES (%s) RETURNING at", (number,)
                    ).fetchone()
                    assert done is not None
                    self.committed.append((number, done[0]))  # after the commit returned
                    deadline += self.every
                    self.stop.wait(max(0.0, deadline - time.monotonic()))
        except psycopg.OperationalError as exc:
            if not self.expect_death:
                self.error = exc
        except BaseException as exc:  # seen by the caller
            self.error = exc


def commit_times(url: str) -> list[tuple[int, datetime]]:
    """Each marker with its commit record's time (track_commit_timestamp must be on)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, pg_xact_commit_timestamp(xmin), at FROM markers ORDER BY id"
        ).fetchall()
    for number, committed, at in rows:
        assert committed is not None, f"marker {number}: no commit timestamp recorded"
        assert committed >= at, f"marker {number} committed before its row was made"
    return [(int(number), committed) for number, committed, _ in rows]


def through(marks: Sequence[tuple[int, datetime]], moment: datetime) -> list[int]:
    """The markers a restore to `moment` keeps: those committed at or before it."""
    return [number for number, committed in marks if committed <= moment]


def pgbench(binary: str, url: str, *args: str, log: Path) -> "subprocess.Popen[bytes]":
    """pgbench against `url` (a libpq connection string), its output in `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [binary, *args, url], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )


def copy_wal(pg_wal: Path, into: Path) -> int:
    """The server's own WAL segments (and history files), copied as they are; how many."""
    into.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(pg_wal.iterdir()):
        if SEGMENT_NAME.match(path.name) or path.name.endswith(".history"):
            shutil.copyfile(path, into / path.name)
            count += 1
    return count


def recover_to(data: Path, *, wal: Path, moment: datetime) -> None:
    """Make the data directory (a pg_basebackup of the source) an archive recovery that
    stops at `moment` (a commit at exactly it kept) and promotes: PostgreSQL's own PITR,
    with the source's WAL served from `wal`."""
    settings = {
        "restore_command": f"cp {wal}/%f %p",
        "recovery_target_time": moment.isoformat(),
        "recovery_target_inclusive": "on",
        "recovery_target_action": "promote",
    }
    lines = "".join(f"{name} = '{value}'\n" for name, value in settings.items())
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(lines)
    (data / "recovery.signal").touch()
    with contextlib.suppress(FileNotFoundError):
        (data / "standby.signal").unlink()


def canonical_dump(pg_dump: str, conninfo: str, *tables: str) -> str:
    """`pg_dump` (plain, no owners or grants) of the database, or of `tables`, with each
    table's data lines sorted (row order on disk is not what is compared) and comments,
    blank lines and the restrict key (random per run, PostgreSQL 15.14+) left out."""
    argv = [pg_dump, "--no-owner", "--no-privileges", "-d", conninfo]
    for table in tables:
        argv += ["-t", table]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return "\n".join(_canonical(done.stdout.splitlines()))


def _canonical(lines: Sequence[str]) -> Iterator[str]:
    block: list[str] | None = None
    for line in lines:
        if block is not None:
            if line == "\\.":
                yield from sorted(block)
                yield line
                block = None
            else:
                block.append(line)
            continue
        if (
            not line.strip()
            or line.startswith("--")
            or line.startswith(("\\restrict", "\\unrestrict"))
        ):
            continue
        yield line
        if line.startswith("COPY ") and line.endswith("FROM stdin;"):
            block = []
