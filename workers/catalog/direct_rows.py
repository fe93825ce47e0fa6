"""What `backfleet backup` writes and reads in the catalog, in plain SQL over direct.py's
connection (no SQLAlchemy): its Pending backup, the task id, and what `--wait` polls.

The Pending row is the one queries.create_backup inserts (every column the model gives a
default, the same timestamp rule and conflicts); tests/unit/test_direct_rows.py holds the
two to the same rows and the same errors on SQLite and PostgreSQL.
"""

import json
from dataclasses import dataclass
from datetime import timedelta

from workers.catalog.direct import DirectCatalog
from workers.catalog.drivers import compact_json
from workers.catalog.statuses import ACTIVE_STATUSES, PENDING, SUCCESS
from workers.errors import ConflictError
from workers.timestamps import format_timestamp, utcnow

# A backup's timestamp is its second; a second already taken by a finished backup of the
# namespace moves the new one to the next, at most this many times.
TIMESTAMP_TRIES = 10
_ACTIVE = f"status IN ({', '.join(repr(status) for status in ACTIVE_STATUSES)})"


@dataclass(frozen=True)
class PendingBackup:
    """A backup request's row: what the request needs of it once it is written."""

    id: int
    timestamp: str


@dataclass(frozen=True)
class BackupState:
    status: str
    error: str | None
    bytes_done: int  # source bytes read so far, over every artifact


@dataclass(frozen=True)
class BackupTask:
    id: int
    task_id: str | None
    services: list[str]


def restore_in_the_way(namespace: str, timestamp: str, status: str) -> ConflictError:
    return ConflictError(
        f"a restore of {timestamp} into namespace {namespace} is {status}", timestamp=timestamp
    )


def backup_in_the_way(namespace: str, timestamp: str, status: str) -> ConflictError:
    return ConflictError(
        f"backup {timestamp} of namespace {namespace} is {status}", timestamp=timestamp
    )


def no_free_timestamp(namespace: str) -> ConflictError:
    return ConflictError(f"no free timestamp for a backup of namespace {namespace}")


class DirectRows:
    """The rows of a backup request (operations.pending.BackupRows), and its progress."""

    def __init__(self, catalog: DirectCatalog) -> None:
        self.catalog = catalog

    def create_backup(
        self,
        *,
        namespace: str,
        services: list[str],
        only_config: bool,
        trigger: str,
        requested_by: str | None,
        requested_customer: str | None,
    ) -> PendingBackup:
        """Insert a Pending backup stamped now (or the next free second), unless a restore
        of the namespace is active; ConflictError names what is in the way."""
        catalog = self.catalog
        moment = utcnow()
        with catalog.transaction() as execute:
            restoring = execute(
                f"SELECT timestamp, status FROM restores WHERE namespace = ? AND {_ACTIVE}",
                (namespace,),
            ).fetchone()
            if restoring is not None:
                raise restore_in_the_way(namespace, restoring[0], restoring[1])
            for attempt in range(TIMESTAMP_TRIES):
                timestamp = format_timestamp(moment + timedelta(seconds=attempt))
                execute("SAVEPOINT backup_row")
                try:
                    row = execute(
                        "INSERT INTO backups (namespace, timestamp, status, only_config, "
                        "trigger, services, requested_by, requested_customer, attempts, "
                        f"created_at, pinned) VALUES (?, ?, ?, ?, ?, {catalog.json_placeholder()}"
                        ", ?, ?, 0, ?, ?) RETURNING id",
                        (
                            namespace,
                            timestamp,
                            PENDING,
                            only_config,
                            trigger,
                            compact_json(services),
                            requested_by,
                            requested_customer,
                            catalog.datetime_param(utcnow()),
                            False,
                        ),
                    ).fetchone()
                except Exception as exc:
                    if not catalog.is_integrity_error(exc):
                        raise
                    execute("ROLLBACK TO SAVEPOINT backup_row")
                    running = execute(
                        f"SELECT timestamp, status FROM backups WHERE namespace = ? AND {_ACTIVE}",
                        (namespace,),
                    ).fetchone()
                    if running is not None:
                        raise backup_in_the_way(namespace, running[0], running[1]) from None
                    continue  # that second is taken by a finished backup: try the next one
                execute("RELEASE SAVEPOINT backup_row")
                return PendingBackup(id=int(row[0]), timestamp=timestamp)
        raise no_free_timestamp(namespace)

    def forget_unqueued_backup(self, backup_id: int) -> bool:
        """Delete the row of a request the broker never took, while it is still Pending;
        False when a worker has it already (then it stands)."""
        with self.catalog.transaction() as execute:
            deleted = execute(
                "DELETE FROM backups WHERE id = ? AND status = ?", (backup_id, PENDING)
            ).rowcount
            if deleted:
                return True
            return execute("SELECT id FROM backups WHERE id = ?", (backup_id,)).fetchone() is None

    def set_backup_task(self, backup_id: int, task_id: str) -> None:
        """Record the task id, unless a worker recorded one first."""
        with self.catalog.transaction() as execute:
            execute(
                "UPDATE backups SET task_id = ? WHERE id = ? AND task_id IS NULL",
                (task_id, backup_id),
            )

    def backup_task(self, *, namespace: str, timestamp: str) -> BackupTask | None:
        with self.catalog.transaction() as execute:
            row = execute(
                "SELECT id, task_id, services FROM backups WHERE namespace = ? AND timestamp = ?",
                (namespace, timestamp),
            ).fetchone()
        if row is None:
            return None
        services = json.loads(row[2]) if isinstance(row[2], str | bytes) else row[2]
        return BackupTask(id=int(row[0]), task_id=row[1], services=list(services or []))

    def backup_state(self, *, namespace: str, timestamp: str) -> BackupState | None:
        """A backup's status, error and progress in one query: what a waiting client polls."""
        with self.catalog.transaction() as execute:
            row = execute(
                "SELECT b.status, b.error, COALESCE(SUM(a.bytes_done), 0) FROM backups b "
                "LEFT OUTER JOIN artifacts a ON a.backup_id = b.id "
                "WHERE b.namespace = ? AND b.timestamp = ? GROUP BY b.id",
                (namespace, timestamp),
            ).fetchone()
        return None if row is None else BackupState(row[0], row[1], int(row[2]))

    def expected_size(self, backup: BackupTask, *, namespace: str) -> int | None:
        """The source bytes of the services' last successful backup: the ETA's yardstick."""
        with self.catalog.transaction() as execute:
            previous = execute(
                "SELECT id FROM backups WHERE namespace = ? AND status = ? AND id != ? "
                "ORDER BY timestamp DESC LIMIT 1",
                (namespace, SUCCESS, backup.id),
            ).fetchone()
            if previous is None:
                return None
            sizes = execute(
                "SELECT service, source_size FROM artifacts WHERE backup_id = ?", (previous[0],)
            ).fetchall()
        return sum(size or 0 for service, size in sizes if service in backup.services) or None
