"""Test restores: restore a backup into scratch targets and compare with what the manifest recorded.

- PostgreSQL: into a scratch database on the service's server (the backup
  role needs CREATEDB); per-table row counts must equal those taken in the
  dump's own snapshot.
- SQLite: into a scratch file; `PRAGMA integrity_check` must pass and the
  per-table row counts must match.
- Directory: into a scratch folder; per volume, the file count, bytes and the
  digest of every file's path, size and content hash (`files_blake3`, or
  `files_sha256` in manifests written before BLAKE3) must match.

Archived artifacts (operations/tiers.py) are asked back from the store first, all at
once, and the drill waits for them (transfer/rehydration.py), as a restore does.

Each kind's check is its own (`restore_test_target` in sources/); the scratch
database and folder are removed whatever happens. A kind without one says why in
`no_restore_test` (command services: their tools' targets are their own business).
"""

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from redis.exceptions import RedisError

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS, Verification
from workers.catalog.tiers import record_storage_classes
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.operations.locks import reading_mark, wait_while_retention
from workers.operations.verdicts import report_verdict
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.sources import source_class
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow
from workers.transfer import crypto
from workers.transfer.download import restore_artifacts
from workers.transfer.rehydration import RehydrationWait, wait_until_readable

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
        testable: list[tuple[str, list[ArtifactEntry], ServiceSpec]] = []
        for service in manifest.services():
            entries = manifest.artifacts_of(service)
            spec = specs.get(service)
            kind = str(entries[0].source.get("kind") or (spec.kind if spec else ""))
            if spec is None or spec.kind != kind or source_class(kind).no_restore_test:
                skipped.append(service)
            else:
                testable.append((service, entries, spec))
        keys = [entry.key for _, entries, _ in testable for entry in entries]
        _rehydrate(fleet, namespace, timestamp, keys)
        for service, entries, spec in testable:
            work = fleet.settings.backfleet_work_dir
            scratch = Path(tempfile.mkdtemp(prefix="backfleet-restore-test-", dir=work))
            try:
                _test_restore(fleet.store, entries, spec, keyring, scratch)
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
    log.info(
        "test restore of %s/%s: %s%s",
        namespace,
        timestamp,
        result.status,
        f": {error}" if error else "",
    )
    _record(fleet, result)
    return result


def _rehydrate(fleet: Fleet, namespace: str, timestamp: str, keys: list[str]) -> None:
    """Every archived artifact asked back at once and waited for; the class a rehydration
    left each in (Azure: Hot) recorded."""
    moved = wait_until_readable(fleet.store, keys, RehydrationWait.from_settings(fleet.settings))
    if moved:
        with session_scope(fleet.settings.database_url) as session:
            record_storage_classes(
                session, namespace=namespace, timestamp=timestamp, classes=moved, since=utcnow()
            )


def _test_restore(
    store: ObjectStore,
    entries: list[ArtifactEntry],
    spec: ServiceSpec,
    keyring: crypto.Keyring,
    scratch: Path,
) -> None:
    """Restore into the kind's scratch target, then run its check on the recorded facts."""
    target = source_class(spec.kind).restore_test_target(spec, scratch)
    assert target is not None  # no_restore_test is None
    with target as restore:
        restore_artifacts(store=store, entries=entries, source=restore.target, keyring=keyring)
        restore.check([entry.source for entry in entries])


# --- recording ---


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
                backup_id=backup.id if backup else None,
                namespace=result.namespace,
                timestamp=result.timestamp,
                kind="restore",
                store="primary",
                status=result.status,
                artifacts=len(result.tested),
                bytes_read=0,
                error=result.error,
                checked_at=now,
            )
        )
        if backup is not None and result.status == FAILED:
            backup.verified, backup.verified_at = FAILED, now
    failed = [result] if result.status == FAILED else []
    report_verdict(
        fleet,
        namespace=result.namespace,
        timestamp=result.timestamp,
        failed=failed,
        what="test restore",
        condition_suffix=":restore",
    )
