"""Progress bars for `backfleet backup --wait` and `restore --wait`, read from the catalog.

`backup --wait` reads its row in plain SQL (catalog/direct_rows.py) and blocks on the
task's end between two looks; it loads rich only when there is a bar to draw (a terminal),
so a script or a cron job waiting for a backup costs the worker next to it no CPU.
`restore --wait` reads its row through SQLAlchemy, which its request loaded already.
"""

import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from workers.catalog.direct_rows import DirectRows
from workers.errors import UnreachableError
from workers.queues import RUN_BACKUP, RUN_RESTORE, queue_of

if TYPE_CHECKING:
    from rich.progress import Progress

TERMINAL = ("Success", "Failed")
# Without a way to hear of the task's end: one small query per poll, so a backup that
# ends is seen within a tenth of a second.
POLL_SECONDS = 0.1
# With one (tasks.results.TaskEnd): the bar is redrawn from the catalog this often.
DRAW_SECONDS = 0.5
# With one and no bar to redraw: the catalog is read this often (for the pickup check
# below, and in case the end is never announced), and at once when the task ends.
QUIET_SECONDS = 5.0
# (task id, seconds) -> whether the task ended meanwhile: blocks until it ends or time is up.
TaskWaiter = Callable[[str, float], bool]
# queue -> how many workers consume it (None: nobody could be asked).
ConsumerCount = Callable[[str], int | None]
# A job still Pending this long makes --wait ask whether any worker consumes its queue,
# and again this often: with none, waiting would never end.
PICKUP_CHECK_SECONDS = 15.0
# What makes rich take an output for a terminal, or interactive, whatever it is: with any
# of them set, rich itself decides what to draw.
RICH_TERMINAL_VARIABLES = ("TTY_COMPATIBLE", "FORCE_COLOR", "TTY_INTERACTIVE")


class PickupWatch:
    """Gives up on a job no worker will take: Pending past PICKUP_CHECK_SECONDS while no
    worker consumes its queue. A busy worker (the job queued behind another) keeps
    the wait going; so does a broker that cannot be asked."""

    def __init__(
        self,
        what: str,
        queue: str,
        consumers: ConsumerCount | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.queue, self.consumers, self.clock = what, queue, consumers, clock
        self.next_check = clock() + PICKUP_CHECK_SECONDS

    def check(self, status: str) -> None:
        if status != "Pending" or self.consumers is None or self.clock() < self.next_check:
            return
        self.next_check = self.clock() + PICKUP_CHECK_SECONDS
        if self.consumers(self.queue) == 0:
            raise UnreachableError(
                f"no worker consumes queue `{self.queue}`, so nothing runs the {self.what}: it "
                "stays queued and runs once a worker starts (`backfleet worker --queues "
                f"{self.queue},…`, or `backfleet up`); stopped waiting"
            )


def draws_a_bar(quiet: bool) -> bool:
    """Whether rich could draw anything: it draws only to a terminal (stdout a tty, or
    one of RICH_TERMINAL_VARIABLES set). Its bar is transient, so elsewhere it leaves
    only an empty line (_NoBar), and is not even loaded."""
    if quiet:
        return False
    forced = any(name in os.environ for name in RICH_TERMINAL_VARIABLES)
    try:
        return forced or sys.stdout.isatty()
    except ValueError:  # a closed stdout
        return False


def _bar(quiet: bool = False) -> "Progress":
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=quiet,
        refresh_per_second=4,  # a bar, not an animation: leave the CPU to the backup
    )


class _NoBar:
    """What rich's bar shows where it cannot draw: nothing but the empty line its stop
    prints when the output is not interactive (none with `quiet`, a disabled bar)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.quiet:
            print()

    def add_task(self, description: str, total: int | None) -> int:
        return 0

    def update(self, task: int, **fields: Any) -> None:
        return None


def wait_for_backup(
    rows: DirectRows,
    namespace: str,
    timestamp: str,
    *,
    waiter: TaskWaiter | None = None,
    consumers: ConsumerCount | None = None,
    quiet: bool = False,
) -> tuple[str, str | None]:
    """Draw bytes done, throughput and ETA until the backup ends (`quiet`: no bar);
    return (status, error).
    UnreachableError if it stays Pending while no worker consumes its queue."""
    watch = PickupWatch(f"backup {timestamp}", queue_of(RUN_BACKUP), consumers)
    backup = rows.backup_task(namespace=namespace, timestamp=timestamp)
    assert backup is not None
    draw = draws_a_bar(quiet)
    total = rows.expected_size(backup, namespace=namespace) if draw else None
    pause = _Pause(waiter, backup.task_id, DRAW_SECONDS if draw else QUIET_SECONDS)
    with _bar() if draw else _NoBar(quiet) as progress:
        task: Any = progress.add_task(f"backup {timestamp}", total=None)
        while True:
            state = rows.backup_state(namespace=namespace, timestamp=timestamp)
            assert state is not None
            progress.update(
                task,
                completed=state.bytes_done,
                total=max(total, state.bytes_done) if total else None,
                description=f"backup {timestamp} {state.status}",
            )
            if state.status in TERMINAL:
                return state.status, state.error
            watch.check(state.status)
            pause()


def wait_for_restore(
    database_url: str,
    restore_id: int,
    *,
    waiter: TaskWaiter | None = None,
    consumers: ConsumerCount | None = None,
    quiet: bool = False,
) -> tuple[str, str | None]:
    """Draw stored bytes read back, throughput and ETA, and what it is doing or waiting for
    (rehydration, a restore to a moment's WAL), until the restore ends (`quiet`: no bar).
    UnreachableError if it stays Pending while no worker consumes its queue."""
    # Here, not above: `backup --wait` reads its rows without SQLAlchemy.
    from workers.catalog import queries
    from workers.catalog.db import session_scope

    pause: _Pause | None = None
    watch = PickupWatch(f"restore {restore_id}", queue_of(RUN_RESTORE), consumers)
    with _bar(quiet) as progress:
        task = progress.add_task("restore", total=None)
        while True:
            with session_scope(database_url) as session:
                row = queries.get_restore(session, restore_id=restore_id)
                assert row is not None
                status, error = row.status, row.error
                done, total = row.bytes_done, row.bytes_total
                pause = pause or _Pause(waiter, row.task_id)
            # What it waits for or does (archived objects rehydrated, WAL fetched, replayed).
            waiting = f": {row.message}" if row.message else ""
            progress.update(
                task,
                completed=done,
                total=total,
                description=f"restore {row.timestamp} {status}{waiting}",
            )
            if status in TERMINAL:
                return status, error
            watch.check(status)
            pause()


class _Pause:
    """Waits between two looks at the catalog: until the task ends (or `seconds` pass,
    to redraw the bar) when there is a waiter and a task id, else POLL_SECONDS.
    Once the task has ended, the row is read again after POLL_SECONDS: a task that
    ended before its row did (it handed the namespace to another holder) is polled."""

    def __init__(
        self, waiter: TaskWaiter | None, task_id: str | None, seconds: float = DRAW_SECONDS
    ) -> None:
        self.waiter, self.task_id, self.seconds = waiter, task_id, seconds
        self.ended = False

    def __call__(self) -> None:
        if self.waiter is None or self.task_id is None or self.ended:
            time.sleep(POLL_SECONDS)
        else:
            self.ended = self.waiter(self.task_id, self.seconds)
