"""Running (or resuming) one backup: each service in turn, then the signed manifest, then
the row's outcome, alerts and size checks."""

import hashlib
import logging
import time
from collections.abc import Callable

from billiard.exceptions import SoftTimeLimitExceeded

from workers.catalog import queries
from workers.catalog.attempts import StopJob, start_attempt
from workers.catalog.db import Session, session_scope, write_catalog
from workers.catalog.models import FAILED, SUCCESS, Backup
from workers.errors import NotFoundError
from workers.fleet import Fleet
from workers.monitoring.notify import report_backup_outcome
from workers.monitoring.size_anomalies import check_backup_sizes
from workers.operations.backup.outcome import BackupOutcome, describe
from workers.operations.backup.service import ServiceBackups
from workers.operations.hooks import hooks_deadline
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key
from workers.repository.manifest_mac import MacKeys
from workers.retry import call_with_retries
from workers.timestamps import utcnow

log = logging.getLogger(__name__)


def run_backup(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str,
    lock_lost: Callable[[], bool] = lambda: False,
    started: float | None = None,
) -> BackupOutcome:
    """Run (or resume) the backup; `lock_lost` says another holder took the namespace;
    `started` (time.monotonic()) is when the task began, whose time limits count from it."""
    stop_by = hooks_deadline(fleet.settings, time.monotonic() if started is None else started)
    url = fleet.settings.database_url
    with session_scope(url) as session:
        backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if backup is None:
            raise NotFoundError(
                f"backup {timestamp} of namespace {namespace} is not in the catalog"
            )
        if backup.status in (SUCCESS, FAILED):  # a redelivery of finished work
            return BackupOutcome(namespace, timestamp, backup.status, backup.error, ran=False)
        if not start_attempt(backup, max_redeliveries=fleet.settings.task_max_redeliveries):
            log.error("backup %s/%s: %s", namespace, timestamp, backup.error)
            return BackupOutcome(namespace, timestamp, FAILED, backup.error)
        backup_id, services = backup.id, list(backup.services)
        started_at, only_config, trigger = backup.started_at, backup.only_config, backup.trigger
    assert started_at is not None

    job = ServiceBackups(fleet, backup_id, namespace, timestamp, stop_by)
    entries: list[ArtifactEntry] = []
    errors: list[str] = []
    for service in services:
        _stop_if(lock_lost, namespace, timestamp)
        try:
            entries.extend(job.back_up(service))
        except SoftTimeLimitExceeded:
            # The upload was aborted on the way out; the hard kill is near.
            errors.append(
                f"{service}: stopped by BACKUP_SOFT_TIME_LIMIT "
                f"({fleet.settings.backup_soft_time_limit} s)"
            )
            break
        except Exception as exc:
            message = describe(exc, fleet)
            errors.append(f"{service}: {message}")
            log.error("backup %s/%s: service %s failed: %s", namespace, timestamp, service, message)

    _stop_if(lock_lost, namespace, timestamp)
    manifest_sha256: str | None = None
    manifest_size: int | None = None
    if not errors:
        try:
            manifest = Manifest(
                namespace=namespace,
                timestamp=timestamp,
                only_config=only_config,
                trigger=trigger,
                started_at=started_at.isoformat(),
                finished_at=utcnow().isoformat(),
                artifacts=entries,
            )
            # Signed when a key is at hand; its digest goes to the catalog, and a restore
            # or verification refuses any other manifest (workers/repository/authenticity.py).
            data = manifest.to_bytes(MacKeys.from_settings(fleet.settings).current)
            call_with_retries(
                lambda: fleet.store.put_object(manifest_key(namespace, timestamp), data),
                policy=job.options.retry,
                what="manifest upload",
            )
            manifest_sha256, manifest_size = hashlib.sha256(data).hexdigest(), len(data)
        except Exception as exc:
            errors.append(f"manifest: {describe(exc, fleet)}")

    status = FAILED if errors else SUCCESS
    error = "; ".join(errors) or None

    def finish(session: Session) -> None:
        row = session.get(Backup, backup_id)
        assert row is not None
        row.status, row.error, row.finished_at = status, error, utcnow()
        row.size = sum(entry.size for entry in entries)
        row.manifest_sha256, row.manifest_size = manifest_sha256, manifest_size

    patience = fleet.settings.catalog_retry_seconds
    write_catalog(url, finish, what="recording the backup's result", patience=patience)
    report_backup_outcome(fleet, namespace, timestamp, status, error)  # alerts when Failed
    if status == SUCCESS:  # marks and alerts sizes unlike the service's history; never raises
        check_backup_sizes(
            fleet, backup_id=backup_id, namespace=namespace, timestamp=timestamp, services=services
        )
    return BackupOutcome(namespace, timestamp, status, error)


def _stop_if(lock_lost: Callable[[], bool], namespace: str, timestamp: str) -> None:
    if lock_lost():
        raise StopJob(f"backup {timestamp} of {namespace}: another holder took the namespace lock")
