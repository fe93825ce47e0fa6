"""Progress bars for `backfleet backup --wait` and `restore --wait`, read from the catalog."""

import time

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

TERMINAL = ("Success", "Failed")
POLL_SECONDS = 0.5


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def expected_size(session: Session, backup: Backup) -> int | None:
    """The source bytes of the services' last successful backup: the ETA's yardstick."""
    previous = queries.newest_success(session, namespace=backup.namespace, excluding_id=backup.id)
    if previous is None:
        return None
    sizes = [a.source_size or 0 for a in previous.artifacts if a.service in backup.services]
    return sum(sizes) or None


def wait_for_backup(database_url: str, namespace: str, timestamp: str) -> tuple[str, str | None]:
    """Draw bytes done, throughput and ETA until the backup ends; return (status, error)."""
    with _bar() as progress:
        task = progress.add_task(f"backup {timestamp}", total=None)
        while True:
            with session_scope(database_url) as session:
                backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
                assert backup is not None
                done = sum(a.bytes_done for a in backup.artifacts)
                total = expected_size(session, backup)
                status, error = backup.status, backup.error
            progress.update(
                task,
                completed=done,
                total=max(total, done) if total else None,
                description=f"backup {timestamp} {status}",
            )
            if status in TERMINAL:
                return status, error
            time.sleep(POLL_SECONDS)


def wait_for_restore(database_url: str, restore_id: int) -> tuple[str, str | None]:
    """Draw stored bytes read back, throughput and ETA until the restore ends."""
    with _bar() as progress:
        task = progress.add_task("restore", total=None)
        while True:
            with session_scope(database_url) as session:
                row = queries.get_restore(session, restore_id=restore_id)
                assert row is not None
                status, error = row.status, row.error
                done, total = row.bytes_done, row.bytes_total
            progress.update(
                task, completed=done, total=total, description=f"restore {row.timestamp} {status}"
            )
            if status in TERMINAL:
                return status, error
            time.sleep(POLL_SECONDS)
