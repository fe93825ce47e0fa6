"""A restore to a moment (`targetTime`, `backfleet restore --to-time`).

Request side (`choose_backup`): every service restored that has base backups in the
source namespace (its `pitr` services) must hold the target inside its recoverable
window (pitr/window.py), else the request is refused (InvalidRequestError: 422, naming
the window); the backup restored is the newest one whose base backup of each of them is
one the WAL continues from, with its consistent point at or before the target. Its
other services are restored from that same backup, as they were at backup time.

Worker side (`replay_to`): the base backup's restore (pitr/base_restore.py) is told to
fetch the WAL (pitr/wal_fetch.py) into its scratch server's folder before the server
starts, then to recover to the target (recovery_target_time, inclusive, promote). The
window is read again: what the catalog says now (a gap recorded since, WAL deleted)
decides, and a target the WAL no longer reaches fails the restore before the target
database is touched.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import InvalidRequestError, SourceError
from workers.fleet import Fleet
from workers.pitr.wal_fetch import Say, catalog_reload, fetch_wal, wal_to_fetch
from workers.pitr.window import Window, load_window
from workers.sources import Source
from workers.timestamps import format_moment
from workers.transfer.crypto import Keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MomentPlan:
    timestamp: str  # the backup restored: its base backups are replayed to the target
    windows: dict[str, Window]  # of each service replayed


def choose_backup(
    fleet: Fleet,
    *,
    namespace: str,
    source_namespace: str,
    skip: Iterable[str],
    target: datetime,
    timestamp: str | None = None,
) -> MomentPlan:
    """The backup a restore to `target` starts from (`timestamp`, if given, must be one)."""
    skipped = set(skip)
    wanted = [name for name in fleet.config.services_of(namespace) if name not in skipped]
    moment = format_moment(target)
    with session_scope(fleet.settings.database_url) as session:
        services = [
            name
            for name in wanted
            if queries.base_backups(session, namespace=source_namespace, service=name)
        ]
        windows = {
            name: load_window(session, namespace=source_namespace, service=name)
            for name in services
        }
    if not windows:
        raise InvalidRequestError(
            f"targetTime needs a service with point-in-time recovery (`pitr = true`) and "
            f"base backups in namespace {source_namespace}; none of "
            f"{', '.join(wanted) or 'the services'} has any"
        )
    outside = [window for window in windows.values() if not window.contains(target)]
    if outside:
        raise InvalidRequestError(
            "; ".join(
                f"targetTime {moment} is outside the recoverable window of service "
                f"{window.service} of namespace {source_namespace}: {window.describe()}"
                for window in outside
            )
        )
    fitting: set[str] | None = None
    for window in windows.values():
        stamps = {base.timestamp for base in window.bases if base.end_time <= target}
        fitting = stamps if fitting is None else fitting & stamps
    fitting = fitting or set()
    if timestamp is not None and timestamp not in fitting:
        newest = f" (backup {max(fitting)} is)" if fitting else ""
        raise InvalidRequestError(
            f"backup {timestamp} of namespace {source_namespace} is not one a restore to "
            f"{moment} can start from: its base backups must end before the target, with the "
            f"WAL continuous from them{newest}; omit the timestamp to let the fleet choose"
        )
    if not fitting:
        raise InvalidRequestError(
            f"no backup of namespace {source_namespace} holds a base backup of each of "
            f"{', '.join(sorted(windows))} from which the WAL reaches {moment}: restore them "
            "one at a time (skip the others)"
        )
    return MomentPlan(timestamp=timestamp or max(fitting), windows=windows)


def replay_to(
    source: Source,
    fleet: Fleet,
    *,
    namespace: str,
    service: str,
    timestamp: str,
    target: datetime,
    say: Say,
    on_read: Callable[[int], None] | None = None,
) -> None:
    """Set `source` (a base backup's restore) to fetch the WAL and recover to `target`;
    `on_read` is told the stored bytes of WAL read."""
    from workers.pitr.base_restore import BaseBackupRestore  # psycopg: only when needed
    from workers.pitr.scratch import Recovery, ScratchPostgres

    if not isinstance(source, BaseBackupRestore):
        raise SourceError(f"{service} is not a base backup: it cannot be restored to a moment")
    with session_scope(fleet.settings.database_url) as session:
        window = load_window(session, namespace=namespace, service=service)
    base = next((base for base in window.bases if base.timestamp == timestamp), None)
    if base is None or base.end_time > target or not window.contains(target):
        raise SourceError(
            f"a restore of {service} to {format_moment(target)} from backup {timestamp} is "
            f"not possible any more: the recoverable window is {window.describe()}"
        )
    files = wal_to_fetch(window, base, target)
    keyring = Keyring.from_settings(fleet.settings)
    log.info(
        "%s: restoring to %s from backup %s: %d WAL files to fetch",
        service,
        format_moment(target),
        timestamp,
        len(files),
    )

    reload = catalog_reload(fleet.settings.database_url, namespace, service)

    def prepare(scratch: ScratchPostgres) -> None:
        wal_dir = scratch.wal_dir
        read = fetch_wal(
            fleet.store, keyring, files, wal_dir, service=service, say=say, reload=reload
        )
        if on_read is not None:
            on_read(read)
        say(f"{service}: replaying the WAL to {format_moment(target)}")

    source.recovery = Recovery(target_time=target, inclusive=True)
    source.prepare = prepare
