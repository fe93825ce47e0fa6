"""Test restores: restore a backup into scratch targets and compare with what the manifest recorded.

- PostgreSQL: into a scratch database on the service's server (the backup
  role needs CREATEDB); per-table row counts must equal those taken in the
  dump's own snapshot.
- SQLite: into a scratch file; `PRAGMA integrity_check` must pass and the
  per-table row counts must match.
- Directory: into a scratch folder; per volume, the file count, bytes and the
  digest of every file's path, size and content hash (`files_blake3`, or
  `files_sha256` in manifests written before BLAKE3) must match.

The scratch database and folder are removed whatever happens. Command
services are not tested (their tools' targets are their own business).
"""

import bisect
import logging
import os
import secrets
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from redis.exceptions import RedisError

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS, Verification
from workers.errors import IntegrityError, SourceError, reason_of
from workers.fleet import Fleet
from workers.operations.locks import reading_mark, wait_while_retention
from workers.operations.verify import report_verdict
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.sources.directory import (
    FILE_HASH,
    FILE_HASHES,
    DirectorySource,
    FileDigest,
    Key,
    _Walk,
    decode_position,
)
from workers.sources.postgres import PostgresSource
from workers.sources.postgres import _row_counts as postgres_row_counts
from workers.sources.sqlite import SqliteSource
from workers.sources.sqlite import _row_counts as sqlite_row_counts
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import restore_artifacts

log = logging.getLogger(__name__)
RETENTION_WAIT = 600  # seconds a test restore waits for a retention pass of its namespace


@dataclass(frozen=True)
class RestoreTestResult:
    namespace: str
    timestamp: str
    status: str
    tested: list[str]  # services restored and compared
    skipped: list[str]  # services of a kind that is not tested
    error: str | None = None
    store: str = "primary"


Check = Callable[[ObjectStore, list[ArtifactEntry], ServiceSpec, crypto.Keyring, Path], None]


def run_restore_tests(
    fleet: Fleet, *, namespace: str | None = None, timestamp: str | None = None
) -> list[RestoreTestResult]:
    """The newest successful backup of each configured namespace (or the one asked for)."""
    results = []
    for ns in [namespace] if namespace else sorted(fleet.config.namespaces):
        stamp = timestamp or _newest_success(fleet, ns)
        if stamp is not None:
            results.append(run_restore_test(fleet, namespace=ns, timestamp=stamp))
    return results


def run_restore_test(fleet: Fleet, *, namespace: str, timestamp: str) -> RestoreTestResult:
    """Test one backup, marked as being read so retention keeps it (operations/retention.py)."""
    mark = reading_mark(fleet.settings, namespace, timestamp)
    try:
        mark.acquire()
    except RedisError as exc:  # retention cannot take its lock without Redis either: go on
        log.warning("could not mark %s/%s as being read: %s", namespace, timestamp, exc)
        return _run_restore_test(fleet, namespace=namespace, timestamp=timestamp)
    try:
        wait_while_retention(fleet.settings, namespace, wait=RETENTION_WAIT)
        return _run_restore_test(fleet, namespace=namespace, timestamp=timestamp)
    finally:
        mark.release()


def _run_restore_test(fleet: Fleet, *, namespace: str, timestamp: str) -> RestoreTestResult:
    keyring = crypto.Keyring.from_settings(fleet.settings)
    tested: list[str] = []
    skipped: list[str] = []
    errors: list[str] = []
    try:
        trusted = load_manifest(fleet, namespace=namespace, timestamp=timestamp, store=fleet.store)
        manifest = trusted.manifest
        specs = fleet.config.services_of(namespace)
        for service in manifest.services():
            entries = manifest.artifacts_of(service)
            spec = specs.get(service)
            kind = str(entries[0].source.get("kind") or (spec.kind if spec else ""))
            check = CHECKS.get(kind)
            if check is None or spec is None or spec.kind != kind:
                skipped.append(service)
                continue
            scratch = Path(tempfile.mkdtemp(prefix="backfleet-restore-test-",
                                            dir=fleet.settings.backfleet_work_dir))  # fmt: skip
            try:
                check(fleet.store, entries, spec, keyring, scratch)
                tested.append(service)
            except Exception as exc:
                errors.append(f"{service}: {reason_of(exc)}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except Exception as exc:
        errors.append(reason_of(exc))
    error = redact("; ".join(errors), fleet.secrets()) or None
    result = RestoreTestResult(
        namespace, timestamp, FAILED if error else SUCCESS, tested, skipped, error
    )
    log.info("test restore of %s/%s: %s%s", namespace, timestamp, result.status,
             f": {error}" if error else "")  # fmt: skip
    _record(fleet, result)
    return result


# --- the checks, one per kind ---


def check_postgres(
    store: ObjectStore,
    entries: list[ArtifactEntry],
    spec: ServiceSpec,
    keyring: crypto.Keyring,
    scratch: Path,
) -> None:
    assert spec.url is not None
    source = PostgresSource(spec.url, password_env=spec.password_env, env=spec.env or ())
    name = f"backfleet_restore_test_{secrets.token_hex(6)}"
    params: dict[str, Any] = conninfo_to_dict(spec.url)
    params["dbname"] = name
    with source.connect() as admin:
        admin.autocommit = True
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        target = PostgresSource(
            make_conninfo(**params), password_env=spec.password_env, env=spec.env or ()
        )
        restore_artifacts(store=store, entries=entries, source=target, keyring=keyring)
        with target.connect() as conn:
            counts = _pg_row_counts(conn)
        _compare_counts(entries[0], counts)
    finally:
        with source.connect() as admin:
            admin.autocommit = True
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def check_sqlite(
    store: ObjectStore,
    entries: list[ArtifactEntry],
    spec: ServiceSpec,
    keyring: crypto.Keyring,
    scratch: Path,
) -> None:
    target = scratch / "restore-test.sqlite"
    restore_artifacts(store=store, entries=entries, source=SqliteSource(target, scratch),
                      keyring=keyring)  # fmt: skip
    with closing(sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        verdict = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchmany(5)]
        if verdict != ["ok"]:
            raise IntegrityError(f"integrity_check of the restored database: {verdict}")
        counts = _sqlite_row_counts(conn)
    _compare_counts(entries[0], counts)


def check_directory(
    store: ObjectStore,
    entries: list[ArtifactEntry],
    spec: ServiceSpec,
    keyring: crypto.Keyring,
    scratch: Path,
) -> None:
    target = scratch / "tree"
    restore_artifacts(store=store, entries=entries, source=DirectorySource(target),
                      keyring=keyring)  # fmt: skip
    algorithm = recorded_file_hash(entries[0].source)
    found = tree_facts(target, entries, algorithm or FILE_HASH)
    for entry, (files, size, digest) in zip(entries, found, strict=True):
        recorded = entry.source
        where = f"volume {entry.volume}"
        if (files, size) != (recorded.get("files"), recorded.get("bytes")):
            raise IntegrityError(
                f"{where}: restored {files} files of {size} bytes, the manifest says "
                f"{recorded.get('files')} files of {recorded.get('bytes')} bytes"
            )
        if algorithm is not None and digest != recorded.get(f"files_{algorithm}"):
            raise IntegrityError(f"{where}: the restored files' names, sizes or contents differ")


def recorded_file_hash(facts: dict[str, Any]) -> str | None:
    """The per-file hash a directory volume's facts were recorded with, if any."""
    return next((name for name in FILE_HASHES if f"files_{name}" in facts), None)


def tree_facts(
    root: Path, entries: list[ArtifactEntry], algorithm: str = FILE_HASH
) -> list[tuple[int, int, str]]:
    """(files, bytes, files digest) per volume, walking the tree as the backup did."""
    # Volume k holds the entries after volume k-1's `last` up to its own `last`.
    bounds: list[Key] = [decode_position(str(e.source["last"])) for e in entries[:-1]]
    tallies = [_Tally(algorithm) for _ in entries]
    broot = os.fsencode(root)
    walk = _Walk(broot, None)
    while (key := walk.next()) is not None:
        path = os.path.join(broot, *key)
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode):
            walk.enter(key)
        if stat.S_ISREG(mode):
            tallies[bisect.bisect_left(bounds, key)].add(key, path)
    return [(t.files, t.size, t.digest.hexdigest()) for t in tallies]


class _Tally:
    def __init__(self, algorithm: str) -> None:
        self.files, self.size, self.digest = 0, 0, FileDigest(algorithm)

    def add(self, key: Key, path: bytes) -> None:
        size, content = _file_hash(path, self.digest.new_hash())
        self.files += 1
        self.size += size
        self.digest.add(key, size, content)


def _file_hash(path: bytes, digest: Any) -> tuple[int, str]:
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


CHECKS: dict[str, Check] = {
    "postgres": check_postgres,
    "sqlite": check_sqlite,
    "directory": check_directory,
}


# --- comparing and recording ---


def _compare_counts(entry: ArtifactEntry, counts: dict[str, int]) -> None:
    recorded = entry.source.get("row_counts")
    if recorded is None:
        raise SourceError("the manifest recorded no row counts to compare with")
    if counts != recorded:
        differ = sorted(
            f"{table}: {recorded.get(table)} recorded, {counts.get(table)} restored"
            for table in set(recorded) | set(counts)
            if recorded.get(table) != counts.get(table)
        )
        raise IntegrityError("row counts differ: " + ", ".join(differ[:10]))


def _pg_row_counts(conn: Any) -> dict[str, int]:
    return postgres_row_counts(conn)


def _sqlite_row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return sqlite_row_counts(conn)


def _newest_success(fleet: Fleet, namespace: str) -> str | None:
    with session_scope(fleet.settings.database_url) as session:
        newest = queries.newest_success(session, namespace=namespace)
        return newest.timestamp if newest is not None else None


def _record(fleet: Fleet, result: RestoreTestResult) -> None:
    now = utcnow()
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace=result.namespace, timestamp=result.timestamp)
        session.add(
            Verification(
                backup_id=backup.id if backup else None, namespace=result.namespace,
                timestamp=result.timestamp, kind="restore", store="primary",
                status=result.status, artifacts=len(result.tested), bytes_read=0,
                error=result.error, checked_at=now,
            )
        )  # fmt: skip
        if backup is not None and result.status == FAILED:
            backup.verified, backup.verified_at = FAILED, now
    failed = [result] if result.status == FAILED else []
    report_verdict(
        fleet, namespace=result.namespace, timestamp=result.timestamp, failed=failed,
        what="test restore", condition_suffix=":restore",
    )  # fmt: skip
