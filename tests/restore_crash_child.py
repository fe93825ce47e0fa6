"""A worker process running one restore task that stops itself at a chosen dangerous point.

    python -m tests.restore_crash_child RESTORE_ID POINT MARKER

It runs tasks.restore.run_restore (lock, recovery, restore, result) with the
environment it was given; when the restore reaches POINT it writes its pid to
MARKER and SIGSTOPs itself, so the test can SIGKILL it exactly there, as an
OOM kill or a pod eviction would; it pauses once (while MARKER does not exist).

    python -m tests.restore_crash_child --worker POINT MARKER CELERY-ARGS...

runs a Celery worker instead, whose pool processes carry the same hook, so
the broker's own redelivery can be tested. Points:

- directory-exchange: right after the atomic exchange, before the old tree is removed
- directory-renames: the two-rename fallback, between the renames (the target is missing)
- sqlite-staged: the staged copy verified and checked, before the copy into the target
- sqlite-copy: inside the copy's write transaction, after its first page (copied page
  by page here, so the kill lands mid-transaction; the worker copies in one step)
- postgres-transaction: everything but the last chunk fed to pg_restore | psql (the
  preamble's DROP SCHEMAs and most of the data are in the open transaction)
"""

import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import IO, Any


def pause(marker: Path, point: str) -> None:
    if marker.exists():  # once: the redelivered task runs through
        return
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGSTOP)


def install(point: str, marker: Path) -> None:
    from workers.sources import postgres
    from workers.sources import sqlite as sqlite_source
    from workers.sources.directory import swap as directory_swap

    if point == "directory-exchange":
        real_exchange = directory_swap.exchange

        def exchange_then_pause(first: Path, second: Path) -> bool:
            done = real_exchange(first, second)
            assert done, "renameat2(RENAME_EXCHANGE) is unsupported here"
            pause(marker, point)
            return done

        directory_swap.exchange = exchange_then_pause  # type: ignore[assignment]
    elif point == "directory-renames":
        real_rename = os.rename
        directory_swap.exchange = lambda first, second: False  # type: ignore[assignment]

        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            real_rename(src, dst, *args, **kwargs)
            if ".backfleet-old-" in os.fspath(dst):  # the target is now set aside
                pause(marker, point)

        os.rename = rename
    elif point == "sqlite-staged":
        real_copy = sqlite_source.SqliteSource._copy_into

        def copy_after_pause(self: Any, copy: sqlite3.Connection, target: Path) -> None:
            pause(marker, point)
            real_copy(self, copy, target)

        sqlite_source.SqliteSource._copy_into = copy_after_pause  # type: ignore[method-assign]
    elif point == "sqlite-copy":

        def backup_by_pages(src: sqlite3.Connection, dst: sqlite3.Connection, what: str) -> None:
            def progress(status: int, remaining: int, total: int) -> None:
                if what.startswith("restore") and remaining and remaining < total:
                    pause(marker, point)

            src.backup(dst, pages=1, progress=progress)

        sqlite_source._backup = backup_by_pages
    elif point == "postgres-transaction":
        real_feed = postgres._feed_verified

        class PausingStream:
            def __init__(self, stream: Any) -> None:
                self.stream = stream

            def read(self, size: int = -1, /) -> bytes:
                return bytes(self.stream.read(size))

            def verify(self) -> None:  # all but the held-back last chunk is in pg_restore
                pause(marker, point)
                self.stream.verify()

        def feed(stream: Any, restore_in: IO[bytes]) -> None:
            real_feed(PausingStream(stream), restore_in)

        postgres._feed_verified = feed
    else:
        raise SystemExit(f"unknown point {point}")


def main() -> None:
    if sys.argv[1] == "--worker":
        install(sys.argv[2], Path(sys.argv[3]))
        from celery.__main__ import main as celery

        sys.argv = ["celery", *sys.argv[4:]]
        celery()
        return
    restore_id, point, marker = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    install(point, marker)
    from tasks.restore import run_restore

    print(run_restore.apply(kwargs={"restore_id": restore_id}).get(), flush=True)


if __name__ == "__main__":
    main()
