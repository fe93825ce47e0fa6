"""Settling backups and restores whose worker was lost, so no namespace stays blocked.

A row stays `Pending` or `Running` for good when its task can never record an
end: the catalog was unreachable when the task wanted to write it (past
CATALOG_RETRY_SECONDS), the hard time limit killed it, or the broker lost its
message. One active row per namespace is the rule, so every later backup of
the namespace would answer 409. The reconciler (`tasks.maintenance.reconcile`
on RECONCILE_SCHEDULE, `backfleet reconcile`) settles such a row when both its
task and its lock are gone:

- lock: nothing holds the namespace lock (a running backup or restore holds
  it from before its row turns Running until after its end is written, and
  its heartbeat re-takes it within a third of BACKUP_LOCK_TTL if Redis lost it);
- task: its message is neither queued nor delivered-and-unacknowledged in the
  broker (workers/operations/broker_tasks.py). A worker killed mid-task leaves its message
  unacknowledged: Redis hands it back after CELERY_VISIBILITY_TIMEOUT and the
  redelivery resumes the job, so such a row is left to it. A failed or
  time-limited task is acknowledged, and only the reconciler can end its row.
  An age bound on the visibility timeout alone would be simpler, but would
  leave a namespace blocked for 12 hours at the defaults;
- a Pending row must also be older than PENDING_GRACE_SECONDS (the API writes
  the row, then sends the task).

The checks are made twice, a heartbeat interval apart (a message between the
queue and `unacked`, a lock being re-taken), and the row is settled only if
it did not change meanwhile (same status, same delivery count).

A backup is settled from the store, its source of truth: a manifest that is
there, complete (every artifact it lists stored with its size, agreeing
with the artifacts the catalog recorded) and authentic (a valid MAC from the
fleet's keys, or listing exactly the artifacts the catalog recorded as stored,
field for field) makes it `Success`, and the catalog's artifacts and manifest
digest are filled from it; otherwise it is `Failed`. Anyone with write access
to the bucket can put a manifest there: taken in unauthenticated, it would
become what a restore checks against (workers/repository/authenticity.py). A restore
cannot be proven from the store and is `Failed`: its target may hold a part
of the backup. Each settled row is a `BackupReconciled` or `RestoreReconciled`
audit event and alerted like any other end (workers/monitoring/notify.py).
"""

import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import (
    FAILED,
    PENDING,
    SUCCESS,
    Artifact,
    Backup,
    Restore,
)
from workers.errors import BackfleetError
from workers.fleet import Fleet
from workers.monitoring.notify import report_backup_outcome, report_restore_outcome
from workers.operations.broker_tasks import BrokerTasks, tasks_in_broker
from workers.operations.locks import NamespaceBusy, lock_holder, namespace_lock
from workers.operations.recovery import recover_targets
from workers.redact import redact
from workers.repository.authenticity import MAX_MANIFEST_BYTES
from workers.repository.manifest import ArtifactEntry, Manifest, manifest_key, parse_manifest
from workers.repository.manifest_mac import MacKeys
from workers.repository.manifest_mac import verify as verify_mac
from workers.timestamps import utcnow

log = logging.getLogger(__name__)
PENDING_GRACE_SECONDS = 120.0  # the API's write-the-row-then-send window, with room to spare
LOST = "the worker running it was lost"


@dataclass(frozen=True)
class Job:
    """One active row, as it was seen."""

    kind: Literal["backup", "restore"]
    row_id: int
    namespace: str  # the namespace whose lock the job holds (a restore's target)
    timestamp: str
    status: str
    attempts: int
    task_id: str | None
    created_at: datetime
    source_namespace: str | None = None  # a restore's


@dataclass(frozen=True)
class Outcome:
    kind: str
    namespace: str
    timestamp: str
    was: str
    status: str  # the settled status, or "left" when the row was left alone
    reason: str
    restore_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def reconcile(
    fleet: Fleet,
    *,
    dry_run: bool = False,
    pending_grace: float = PENDING_GRACE_SECONDS,
    confirm_after: float | None = None,
) -> list[Outcome]:
    """Settle every active row whose task and lock are gone; say why each other is left."""
    settings = fleet.settings
    jobs = _active_jobs(settings.database_url)
    if not jobs:
        return []
    left, lost = _sort(fleet, jobs, pending_grace)
    if lost and not dry_run:
        time.sleep(settings.backup_lock_ttl / 3 + 1 if confirm_after is None else confirm_after)
        now_active = {(j.kind, j.row_id): j for j in _active_jobs(settings.database_url)}
        again = [job for job in lost if now_active.get((job.kind, job.row_id)) == job]
        more_left, lost = _sort(fleet, again, pending_grace)
        left += more_left
    outcomes = list(left)
    for job in lost:
        outcome = _plan(fleet, job)
        if not dry_run:
            outcome = _settle(fleet, job, outcome)
        outcomes.append(outcome)
    return outcomes


def _active_jobs(url: str) -> list[Job]:
    with session_scope(url) as session:
        backups = queries.active_backups(session)
        jobs = [
            Job(
                "backup",
                b.id,
                b.namespace,
                b.timestamp,
                b.status,
                b.attempts or 0,
                b.task_id,
                b.created_at,
            )
            for b in backups
        ]
        restores = queries.active_restores(session)
        jobs += [
            Job(
                "restore",
                r.id,
                r.namespace,
                r.timestamp,
                r.status,
                r.attempts or 0,
                r.task_id,
                r.created_at,
                r.source_namespace,
            )
            for r in restores
        ]
    return jobs


def _sort(fleet: Fleet, jobs: list[Job], pending_grace: float) -> tuple[list[Outcome], list[Job]]:
    """(the rows left alone, with why; the rows whose task and lock are gone)."""
    broker = tasks_in_broker(fleet.settings.broker_url)
    young = utcnow() - timedelta(seconds=pending_grace)
    left, lost = [], []
    for job in jobs:
        why = _alive(fleet, job, broker, young)
        if why:
            left.append(_outcome(job, "left", why))
        else:
            lost.append(job)
    return left, lost


def _alive(fleet: Fleet, job: Job, broker: BrokerTasks, young: datetime) -> str | None:
    """Why the job may still be running or about to run, or None if it is gone."""
    holder = lock_holder(fleet.settings, job.namespace)
    if holder is not None:
        return f"the namespace lock is held ({holder})"
    if job.kind == "backup" and broker.has_backup(job.task_id, job.namespace, job.timestamp):
        return "its task is in the broker (queued, or to be delivered again)"
    if job.kind == "restore" and broker.has_restore(job.task_id, job.row_id):
        return "its task is in the broker (queued, or to be delivered again)"
    if job.status == PENDING and job.created_at > young:
        return "requested too recently"
    return None


def _outcome(job: Job, status: str, reason: str) -> Outcome:
    return Outcome(
        kind=job.kind,
        namespace=job.namespace,
        timestamp=job.timestamp,
        was=job.status,
        status=status,
        reason=reason,
        restore_id=job.row_id if job.kind == "restore" else None,
    )


def _plan(fleet: Fleet, job: Job) -> Outcome:
    """What the row becomes: a backup from its manifest, a restore Failed."""
    gone = "its task is no longer in the broker and no worker holds the namespace lock"
    if job.kind == "restore":
        if job.status == PENDING:
            return _outcome(job, FAILED, f"its task was lost before it started ({gone})")
        return _outcome(
            job, FAILED, f"{LOST} ({gone}); the target may be partly restored: restore again"
        )
    try:
        _complete_manifest(fleet, job)
    except BackfleetError as exc:
        return _outcome(job, FAILED, f"{LOST} ({gone}; {exc})")
    except Exception as exc:  # the store is unreachable: try again next time
        reason = redact(
            f"the store could not be read: {type(exc).__name__}: {exc}", fleet.secrets()
        )
        return _outcome(job, "left", reason)
    return _outcome(job, SUCCESS, f"its manifest is complete in the store ({gone})")


class Incomplete(BackfleetError):
    pass


def _complete_manifest(fleet: Fleet, job: Job) -> tuple[Manifest, bytes]:
    """The backup's manifest and its bytes, if it is there, authentic, and every artifact is
    stored. Authentic: a valid MAC from the fleet's keys, or exactly the artifacts the
    catalog recorded as stored; else it may be an attacker's, and the catalog (which a
    restore then trusts) must not take it in."""
    key = manifest_key(job.namespace, job.timestamp)
    if not fleet.store.exists(key):
        raise Incomplete("no manifest in the store")
    with fleet.store.open_read(key) as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise Incomplete("the manifest is larger than any manifest we write")
    manifest, document = parse_manifest(data)
    with session_scope(fleet.settings.database_url) as session:
        row = session.get(Backup, job.row_id)
        services = set(row.services) if row is not None else set()
        only_config = row.only_config if row is not None else None
        rows = list(row.artifacts) if row is not None else []
        recorded = {(a.service, a.volume): a.sha256 for a in rows}
        stored_rows = {(a.service, a.volume): _facts(a) for a in rows if _stored(a)}
    if (manifest.namespace, manifest.timestamp) != (job.namespace, job.timestamp):
        raise Incomplete("the manifest names another backup")
    if set(manifest.services()) != services:
        raise Incomplete("the manifest's services differ from the backup's")
    stored = {info.key: info.size for info in fleet.store.list(key.rsplit("/", 1)[0] + "/")}
    for entry in manifest.artifacts:
        if stored.get(entry.key) != entry.size:
            raise Incomplete(f"artifact {entry.key} is missing or not {entry.size} bytes")
        known = recorded.get((entry.service, entry.volume))
        if known is not None and known != entry.sha256:
            raise Incomplete(f"artifact {entry.key} differs from the catalog's record")
    listed = {(entry.service, entry.volume): _facts(entry) for entry in manifest.artifacts}
    as_recorded = listed == stored_rows and manifest.only_config == only_config
    if not (as_recorded or verify_mac(document, MacKeys.from_settings(fleet.settings))):
        raise Incomplete(
            "its manifest cannot be authenticated: it carries no valid MAC from this fleet's "
            "keys and does not list exactly the artifacts the catalog recorded as stored"
        )
    return manifest, data


def _stored(artifact: Artifact) -> bool:
    return artifact.status == SUCCESS and artifact.sha256 is not None


def _facts(item: Artifact | ArtifactEntry) -> tuple[Any, ...]:
    """What a restore uses of an artifact, from a catalog row or a manifest entry."""
    source = item.source if isinstance(item, ArtifactEntry) else item.facts or {}
    return (
        item.key,
        item.size,
        item.sha256,
        item.format,
        item.compression,
        item.encryption,
        item.source_size,
        source,
    )


def _settle(fleet: Fleet, job: Job, outcome: Outcome) -> Outcome:
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
        return _outcome(job, "left", "a job took its namespace lock meanwhile")
    try:
        with session_scope(fleet.settings.database_url) as session:
            row = session.get(Restore, job.row_id)
            services = list(row.services) if row is not None else []
        problems = recover_targets(fleet, namespace=job.namespace, services=services)
        if problems:
            reason = f"{outcome.reason}; not put right: {'; '.join(problems)}"
            outcome = _outcome(job, outcome.status, reason)
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
            return _outcome(job, "left", "it changed while being looked at")
        if isinstance(row, Backup) and outcome.status == SUCCESS:
            try:
                manifest, data = _complete_manifest(fleet, job)
            except BackfleetError as exc:  # it changed between the plan and now
                outcome = _outcome(job, FAILED, f"{LOST} ({exc})")
            else:
                _fill_from_manifest(session, row, manifest, data)
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


def _fill_from_manifest(session: Session, row: Backup, manifest: Manifest, data: bytes) -> None:
    """The catalog's artifacts as the manifest lists them, and the backup's size."""
    for entry in manifest.artifacts:
        artifact = queries.upsert_artifact(
            session,
            backup=row,
            service=entry.service,
            kind=str(entry.source.get("kind") or entry.format),
            key=entry.key,
            fmt=entry.format,
            compression=entry.compression,
            volume=entry.volume,
        )
        artifact.status, artifact.key, artifact.size = SUCCESS, entry.key, entry.size
        artifact.sha256, artifact.source_size = entry.sha256, entry.source_size
        artifact.facts, artifact.encryption = entry.source, entry.encryption
        artifact.upload_id, artifact.error = None, None
        artifact.bytes_done = entry.source_size
        artifact.finished_at = artifact.finished_at or utcnow()
    listed = {(entry.service, entry.volume) for entry in manifest.artifacts}
    for artifact in list(row.artifacts):
        if (artifact.service, artifact.volume) not in listed:
            session.delete(artifact)
    row.size = sum(entry.size for entry in manifest.artifacts)
    # Authenticated by _complete_manifest: from now on a restore accepts only these bytes.
    row.manifest_sha256 = hashlib.sha256(data).hexdigest()


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
