"""`backfleet wal prepare-datadir`: the runbook alternative to a restore into the live
database, for operators who want a server's data directory replaced in place.

It writes, into an empty folder, a PostgreSQL data directory that recovers to a moment
when a server starts on it:

1. the base backup the window picks for the moment (pitr/window.py), read from the
   store, verified (SHA-256 of every stored byte) and unpacked (pitr/unpack.py);
2. the WAL from that base backup through the moment (pitr/wal_fetch.py), verified and
   decoded into its `pg_wal/` (the growing segment's partial under its full name,
   history files too), where recovery reads them (restore_command is `false`);
3. `recovery.signal` and, at the end of its `postgresql.auto.conf`, the recovery target:
   `recovery_target_time`, inclusive, `recovery_target_timeline = 'latest'`, then
   `promote`.

Nothing is started and no server is touched: the operator stops the server, moves its
data directory aside, puts this one in its place (owned by the server's user, mode
0700) and starts it. A folder left half-written by a failure is emptied again.
"""

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from workers.catalog.db import session_scope
from workers.errors import ConfigError, InvalidRequestError
from workers.fleet import Fleet
from workers.pitr.unpack import unpack_base_backup
from workers.pitr.wal_fetch import Say, catalog_reload, fetch_wal, wal_to_fetch
from workers.pitr.window import load_window
from workers.repository.authenticity import load_manifest
from workers.sources import PGBASE
from workers.timestamps import format_moment
from workers.transfer.crypto import Keyring
from workers.transfer.download import open_restore_stream

MARK = "# backfleet wal prepare-datadir"


@dataclass(frozen=True)
class Prepared:
    timestamp: str  # the backup whose base backup it holds
    wal_files: int


def prepare_datadir(
    fleet: Fleet, *, namespace: str, service: str, target: datetime, into: Path, say: Say
) -> Prepared:
    """Write the data directory into `into` (absent or empty); see the module doc."""
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ConfigError(f"{into} is not an empty folder: give a new or empty one")
    with session_scope(fleet.settings.database_url) as session:
        window = load_window(session, namespace=namespace, service=service)
    base = window.base_for(target)
    if base is None or not window.contains(target):
        raise InvalidRequestError(
            f"{format_moment(target)} is outside the recoverable window of service {service} "
            f"of namespace {namespace}: {window.describe()}"
        )
    manifest = load_manifest(fleet, namespace=namespace, timestamp=base.timestamp).manifest
    entry = manifest.artifact(service)
    if entry is None or entry.format != PGBASE:
        raise InvalidRequestError(f"backup {base.timestamp} holds no base backup of {service}")
    keyring = Keyring.from_settings(fleet.settings)
    files = wal_to_fetch(window, base, target)
    made = not into.exists()
    try:
        into.mkdir(mode=0o700, parents=True, exist_ok=True)
        say(f"{service}: reading base backup {base.timestamp}")
        with open_restore_stream(fleet.store, entry, keyring) as stream:
            unpack_base_backup(stream, into)
            stream.verify()  # every stored byte matched before the folder counts
        reload = catalog_reload(fleet.settings.database_url, namespace, service)
        wal = into / "pg_wal"
        wal.mkdir(mode=0o700, exist_ok=True)
        fetch_wal(fleet.store, keyring, files, wal, service=service, say=say, reload=reload)
        _recover_to(into, target)
    except BaseException:
        _empty(into, remove=made)
        raise
    return Prepared(base.timestamp, len(files))


def _recover_to(data: Path, target: datetime) -> None:
    (data / "standby.signal").unlink(missing_ok=True)
    (data / "recovery.signal").write_bytes(b"")
    moment = target.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    lines = [
        f"{MARK}: recover to {format_moment(target)}, then promote",
        "restore_command = 'false'  # the WAL is in pg_wal/",
        f"recovery_target_time = '{moment}'",
        "recovery_target_inclusive = on",
        "recovery_target_timeline = 'latest'",
        "recovery_target_action = 'promote'",
    ]
    auto = data / "postgresql.auto.conf"
    before = auto.read_text() if auto.exists() else ""
    auto.write_text(
        before + ("\n" if before and not before.endswith("\n") else "") + "\n".join(lines) + "\n"
    )


def _empty(folder: Path, *, remove: bool) -> None:
    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir() if folder.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
