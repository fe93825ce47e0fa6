"""The pass over the primary store: every namespace planned under its retention lock,
the deletions, then the moves colder and the lock extensions; failures alerted."""

import logging
from datetime import datetime

from workers.catalog.db import session_scope
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.monitoring.alerts import alerter_for
from workers.monitoring.retention_alerts import report_retention
from workers.operations import gfs, upkeep
from workers.operations.locks import (
    LockLost,
    NamespaceBusy,
    NamespaceLock,
    backups_being_read,
    moving_mark,
    upkeep_lock,
)
from workers.operations.retention.deletion import DELETE_BATCH, delete_batch
from workers.operations.retention.lock import give_up, take_retention_lock
from workers.operations.retention.plan import RetentionPlan, plan_retention, read_by_restores
from workers.operations.retention.policies import service_policies
from workers.operations.retention.wal_deletion import delete_wal
from workers.operations.retention.wal_plan import failures_of, plan_wal
from workers.redact import redact
from workers.repository.namespaces import namespaces_of
from workers.timestamps import utcnow

log = logging.getLogger(__name__)


def apply_retention(
    fleet: Fleet,
    *,
    namespace: str | None = None,
    dry_run: bool = False,
    policy: gfs.Policy | None = None,
    now: datetime | None = None,
    force: bool = False,
) -> list[RetentionPlan]:
    """Plan every namespace (or one) and, unless `dry_run`, delete what the plans say,
    then move and extend the locks of what they keep. `now`: the pass's moment (tests);
    `force`: delete before a storage class's billed minimum has passed."""
    now = now or utcnow()
    plans = []
    visited = [namespace] if namespace else namespaces_of(fleet)
    for ns in visited:  # refused before any lock is taken or anything deleted
        service_policies(fleet, ns, policy)
    for ns in visited:
        if dry_run:
            plan = plan_retention(fleet, namespace=ns, policy=policy, now=now, force=force)
            _retain_wal(fleet, plan, None, now)
            plans.append(plan)
            continue
        lock = take_retention_lock(fleet, ns)
        if isinstance(lock, RetentionPlan):
            plans.append(lock)
            continue
        try:
            # Planned under the lock: every reader registered before it is seen.
            readers = backups_being_read(fleet.settings, ns)
            plan = plan_retention(
                fleet, namespace=ns, policy=policy, being_read=readers, now=now, force=force
            )
            plans.append(plan)
            stamps = sorted(plan.delete)
            for start in range(0, len(stamps), DELETE_BATCH):
                if lock.lost.is_set():
                    give_up(plan, stamps[start:], "the retention lock was lost")
                    break
                delete_batch(fleet, plan, stamps[start : start + DELETE_BATCH])
            _retain_wal(fleet, plan, lock, now)
        finally:
            lock.release()
        _apply_upkeep(fleet, plan, now)
        failures = {**plan.failed, **plan.upkeep_failed, **failures_of(plan)}
        report_retention(alerter_for(fleet), namespace=ns, store="primary", failures=failures)
    return plans


def _retain_wal(
    fleet: Fleet, plan: RetentionPlan, lock: NamespaceLock | None, now: datetime
) -> None:
    """After the backups, the WAL older than every base backup still kept (plan.delete:
    the backups gone, or that would go); `lock` None: a dry run. A failure is the plan's
    (`wal`), never the pass's end."""
    try:
        work = plan_wal(fleet, namespace=plan.namespace, gone=plan.delete)
        plan.wal = [prune for prune, _ in work]
        if lock is not None:
            delete_wal(fleet, namespace=plan.namespace, work=work, lock=lock, now=now)
    except Exception as exc:
        error = redact(reason_of(exc), fleet.secrets())
        log.error("retention of %s: its WAL: %s", plan.namespace, error)
        plan.failed["wal"] = error


def _apply_upkeep(fleet: Fleet, plan: RetentionPlan, now: datetime) -> None:
    """The planned moves, then the lock extensions, under the upkeep lock, not the
    retention lock: moving a large archive colder takes hours, which restores must not
    wait for. Each move holds its backup's moving mark and skips a backup that a reader
    registered on since the plan (locks.MOVING_PREFIX says why that is safe). A backup's
    failure is logged and recorded on the plan (and its entry dropped, so the plan says
    what was done); the next pass tries again."""
    if not plan.moves and not plan.extensions:
        return
    lock = upkeep_lock(fleet.settings, plan.namespace)
    try:
        lock.acquire()
    except NamespaceBusy as busy:  # another pass moves now: the next pass does the rest
        log.warning("retention of %s: moves and lock extensions put off: %s", plan.namespace, busy)
        plan.moves.clear()
        plan.extensions.clear()
        return
    try:
        _upkeep_under(fleet, plan, lock, now)
    finally:
        lock.release()


def _upkeep_under(fleet: Fleet, plan: RetentionPlan, lock: NamespaceLock, now: datetime) -> None:
    work = [(stamp, "move") for stamp in sorted(plan.moves)]
    work += [(stamp, "lock extension") for stamp in sorted(plan.extensions)]
    for stamp, what in work:
        planned = plan.moves if what == "move" else plan.extensions
        try:
            if lock.lost.is_set():
                raise LockLost("the upkeep lock was lost")
            if what == "move":
                _move_unless_read(fleet, plan, stamp, now)
            else:
                upkeep.extend_lock(
                    fleet.store,
                    namespace=plan.namespace,
                    timestamp=stamp,
                    planned=plan.extensions[stamp],
                )
        except Exception as exc:
            error = f"its {what}: {redact(reason_of(exc), fleet.secrets())}"
            log.error("retention: %s/%s: %s", plan.namespace, stamp, error)
            earlier = plan.upkeep_failed.get(stamp)
            plan.upkeep_failed[stamp] = f"{earlier}; {error}" if earlier else error
            planned.pop(stamp, None)


def _move_unless_read(fleet: Fleet, plan: RetentionPlan, stamp: str, now: datetime) -> None:
    """Mark the backup as moving, then look for readers: one that registered since the
    plan keeps it where it is this pass (and waits for a move that started first)."""
    with moving_mark(fleet.settings, plan.namespace, stamp):
        readers = backups_being_read(fleet.settings, plan.namespace)
        with session_scope(fleet.settings.database_url) as session:
            readers |= set(read_by_restores(session, plan.namespace, ()))
        if stamp in readers:
            log.info("retention: %s/%s is being read: not moved this pass", plan.namespace, stamp)
            plan.moves.pop(stamp, None)
            return
        upkeep.move(
            fleet.store,
            fleet.settings.database_url,
            namespace=plan.namespace,
            timestamp=stamp,
            planned=plan.moves[stamp],
            now=now,
        )
