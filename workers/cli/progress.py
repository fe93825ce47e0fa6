"""Progress bars for `backfleet backup --wait` and `restore --wait`, read from the catalog."""

import time
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import Backup
from workers.errors import UnreachableError
from workers.queues import RUN_BACKUP, RUN_RESTORE, queue_of

TERMINAL = ("Success", "Failed")
# Without a way to hear of the task's end: one small query per poll, so a backup that
# ends is seen within a tenth of a second.
POLL_SECONDS = 0.1
# With one (tasks.enqueue.wait_for_task): the bar is redrawn from the catalog this often.
DRAW_SECONDS = 0.5
# (task id, seconds) -> whether the task ended meanwhile: blocks until it ends or time is up.
TaskWaiter = Callable[[str, float], bool]
# queue -> how many workers consume it (None: nobody could be asked).
ConsumerCount = Callable[[str], int | None]
# A job still Pending this long makes --wait ask whether any worker consumes its queue,
# and again this often: with none, waiting would never end.
PICKUP_CHECK_SECONDS = 15.0


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


def _bar(quiet: bool = False) -> Progress:
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


def expected_size(session: Session, backup: Backup) -> int | None:
    """The source bytes of the services' last successful backup: the ETA's yardstick."""
    previous = queries.newest_success(session, namespace=backup.namespace, excluding_id=backup.id)
    if previous is None:
        return None
    sizes = [a.source_size or 0 for a in previous.artifacts if a.service in backup.services]
    return sum(sizes) or None


def wait_for_backup(
    database_url: str,
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
    with session_scope(database_url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        assert backup is not None
        total = expected_size(session, backup)
        pause = _Pause(waiter, backup.task_id)
    with _bar(quiet) as progress:
        task = progress.add_task(f"backup {timestamp}", total=None)
        while True:
            with session_scope(database_url) as session:
                state = queries.backup_state(session, namespace=namespace, timestamp=timestamp)
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
    """Waits between two looks at the catalog: until the task ends (or DRAW_SECONDS
    pass, to redraw the bar) when there is a waiter and a task id, else POLL_SECONDS.
    Once the task has ended, the row is read again after POLL_SECONDS: a task that
    ended before its row did (it handed the namespace to another holder) is polled."""

    def __init__(self, waiter: TaskWaiter | None, task_id: str | None) -> None:
        self.waiter, self.task_id = waiter, task_id
        self.ended = False

    def __call__(self) -> None:
        if self.waiter is None or self.task_id is None or self.ended:
            time.sleep(POLL_SECONDS)
        else:
            self.ended = self.waiter(self.task_id, DRAW_SECONDS)
