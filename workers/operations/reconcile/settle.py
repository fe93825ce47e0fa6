"""What a lost job's row becomes, written (under the namespace lock for a restore),
reported to the audit trail and alerted."""

import logging

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, PENDING, SUCCESS, Backup, Restore
from workers.errors import BackfleetError
from workers.fleet import Fleet
from workers.monitoring.notify import report_backup_outcome, report_restore_outcome
from workers.operations.locks import NamespaceBusy, namespace_lock
from workers.operations.reconcile.from_store import (
    complete_manifest,
    fill_from_manifest,
)
from workers.operations.reconcile.rows import Job, Outcome, outcome_of
from workers.operations.recovery import recover_targets
from workers.redact import redact
from workers.timestamps import utcnow

log = logging.getLogger(__name__)
LOST = "the worker running it was lost"


def plan(fleet: Fleet, job: Job) -> Outcome:
    """What the row becomes: a backup from its manifest, a restore Failed."""
    gone = "its task is no longer in the broker and no worker holds the namespace lock"
    if job.kind == "restore":
        if job.status == PENDING:
            return outcome_of(job, FAILED, f"its task was lost before it started ({gone})")
        return outcome_of(
            job, FAILED, f"{LOST} ({gone}); the target may be partly restored: restore again"
        )
    try:
        complete_manifest(fleet, job)
    except BackfleetError as exc:
        return outcome_of(job, FAILED, f"{LOST} ({gone}; {exc})")
    except Exception as exc:  # the store is unreachable: try again next time
        reason = redact(
            f"the store could not be read: {type(exc).__name__}: {exc}", fleet.secrets()
        )
        return outcome_of(job, "left", reason)
    return outcome_of(job, SUCCESS, f"its manifest is complete in the store ({gone})")


def settle(fleet: Fleet, job: Job, outcome: Outcome) -> Outcome:
    """Write the planned outcome, if the row is still as it was seen; what was written."""
    if outcome.status == "left":
        return outcome
    if job.kind == "backup":
        return _write(fleet, job, outcome)
    # A dead restore may have left its target half swapped or its staging copy behind:
    # put that right under the namespace lock (no job starts on it meanwhile), then settle.
    lock = namespace_lock(
        fleet.settings, job.namespace, label=f"reconcile of restore {job.timestamp}"
    )
    try:
        lock.acquire()
    except NamespaceBusy:
        return outcome_of(job, "left", "a job took its namespace lock meanwhile")
    try:
        with session_scope(fleet.settings.database_url) as session:
            row = session.get(Restore, job.row_id)
            services = list(row.services) if row is not None else []
        problems = recover_targets(fleet, namespace=job.namespace, services=services)
        if problems:
            reason = f"{outcome.reason}; not put right: {'; '.join(problems)}"
            outcome = outcome_of(job, outcome.status, reason)
        return _write(fleet, job, outcome)
    finally:
        lock.release()


def _write(fleet: Fleet, job: Job, outcome: Outcome) -> Outcome:
    url = fleet.settings.database_url
    with session_scope(url) as session:
        row: Backup | Restore | None
        if job.kind == "backup":
            row = queries.lock_backup(session, backup_id=job.row_id)
        else:
            row = queries.lock_restore(session, restore_id=job.row_id)
        if row is None or (row.status, row.attempts or 0) != (job.status, job.attempts):
            return outcome_of(job, "left", "it changed while being looked at")
        if isinstance(row, Backup) and outcome.status == SUCCESS:
            try:
                manifest, data = complete_manifest(fleet, job)
            except BackfleetError as exc:  # it changed between the plan and now
                outcome = outcome_of(job, FAILED, f"{LOST} ({exc})")
            else:
                fill_from_manifest(session, row, manifest, data)
        row.status, row.finished_at = outcome.status, utcnow()
        row.error = None if outcome.status == SUCCESS else outcome.reason
    log.warning(
        "reconciled %s %s/%s: %s -> %s: %s",
        job.kind,
        job.namespace,
        job.timestamp,
        job.status,
        outcome.status,
        outcome.reason,
    )
    _report(fleet, job, outcome)
    return outcome


def _report(fleet: Fleet, job: Job, outcome: Outcome) -> None:
    code = 200 if outcome.status == SUCCESS else 500
    params = {
        "namespace": job.namespace,
        "timestamp": job.timestamp,
        "was": job.status,
        "status": outcome.status,
        "reason": outcome.reason,
    }
    if job.kind == "backup":
        record_system_event(
            namespace=job.namespace, name="BackupReconciled", params=params, response_code=code
        )
        report_backup_outcome(fleet, job.namespace, job.timestamp, outcome.status, outcome.reason)
        return
    params |= {"restoreId": str(job.row_id), "sourceNamespace": job.source_namespace or ""}
    record_system_event(
        namespace=job.namespace, name="RestoreReconciled", params=params, response_code=code
    )
    report_restore_outcome(
        fleet,
        restore_id=job.row_id,
        namespace=job.namespace,
        source_namespace=job.source_namespace or job.namespace,
        timestamp=job.timestamp,
        status=outcome.status,
        error=outcome.reason,
    )
