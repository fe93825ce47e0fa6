"""The retention pass: which backups of a namespace go, and deleting them safely.

Retention is per service (workers/operations/service_series.py): each service's
series is every successful backup holding its artifact (full, onlyConfig or
taken on the service's own schedule), and GFS (workers/operations/gfs.py) runs
over it with the service's own counts, resolved by `FleetConfig.policy_of`: its
`[services.<name>.retention]` table, else the namespace's `[retention]`, else
RETENTION_KEEP_*. A backup goes only when no policy of any service it holds
keeps it. A service no longer in the services file (its artifacts are still in
old backups) takes the namespace's policy (`[retention]`, else RETENTION_KEEP_*)
for its series, and the pass logs it: a renamed or mistyped service keeps its
history, held no longer than a configured service's with those counts (GFS
counts backups, not time: once no new backup of it comes, what its series keeps
stops shrinking; its newest, the last copy, stays). A policy that keeps nothing
(a service's, or the namespace's) is refused with a message naming it, before
any namespace is touched.

Backups are deleted whole, never rewritten: the artifacts of a service whose
policy no longer keeps them stay inside a backup that another service's policy
keeps. Manifests are signed and a restore reads them as written; rewriting one
to drop artifacts would open a window in which a restore reads a half-changed
backup. The cost is the extra artifacts of the faster services in the backups a
slower service still needs (none when each schedule takes its own services).

On top of the counts, these are never deleted: in each service's series its
newest backup (verified or not: the last copy of a service never goes) and its
newest backup whose last verification succeeded; a pinned backup (`backfleet
pin`), a backup a Pending or Running restore reads, and a backup any of whose
objects is under an S3 Object Lock retention or legal hold. Pending, Running and
Failed backups are not touched. Each plan says, of each kept backup, which
service's rule (or which protection) keeps it, and of each deleted one, the
policies of the services it held that were checked.

Retention and restores exclude each other through the namespace's retention
lock (workers/operations/locks.py), held for the whole pass over a namespace (plan and
deletes). A restore's catalog row is written before its worker starts, and
the worker waits while the retention lock of the namespace it reads from is
held (tasks/restore.py). So a restore whose row existed when the pass took
the lock is seen by the plan and its backup kept; one whose row came later
waits until the pass is over, then finds its backup kept or cleanly gone,
never half-deleted. A test restore (no row) holds the same lock while it
reads. The namespace lock itself is not used: it would make retention wait
for backups, and a restore from another namespace holds only its target's.

A deletion removes the manifest first (so the backup is at once incomplete
and no restore starts on half of it), then every other object under its
prefix, then the catalog row; each is an audit event with its reason. A pass
that dies half-way is finished by the next one: deleting is idempotent.

Storage tiers (tiers.py, upkeep.py): a backup retention would delete is kept while its
storage class's billed minimum has not passed since it moved there (unless forced:
`backfleet retention --force`; the scheduled pass never forces). After the deletions,
under the same lock, each backup its policy keeps moves to the class of the warmest
rule that keeps it (STORAGE_CLASSES), only ever colder and never while a restore reads
it, and its Object Lock is extended when less than half of AWS_S3_OBJECT_LOCK_DAYS is
left. The primary store only: the secondary keeps its objects where it wrote them.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import SUCCESS
from workers.catalog.tiers import StoredArtifact, stored_artifacts
from workers.errors import ConfigError, IntegrityError, NotFoundError, reason_of
from workers.fleet import Fleet
from workers.monitoring.alerts import alerter_for
from workers.monitoring.retention_alerts import report_retention
from workers.operations import gfs, service_series, upkeep
from workers.operations.locks import (
    LockLost,
    NamespaceBusy,
    NamespaceLock,
    backups_being_read,
    retention_lock,
)
from workers.operations.service_series import Candidate, ServicePolicies
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import MANIFEST_NAME, backup_prefix, manifest_key
from workers.repository.namespaces import namespaces_of
from workers.stores.base import ObjectStore
from workers.timestamps import is_timestamp, utcnow

log = logging.getLogger(__name__)
DELETE_BATCH = 100  # backups whose catalog rows go in one transaction
# What a series of a service no longer in the services file is checked against.
NOT_CONFIGURED = "not in the services file: the namespace's policy"


@dataclass
class RetentionPlan:
    namespace: str
    keep: dict[str, list[str]] = field(default_factory=dict)  # timestamp -> reasons
    delete: dict[str, str] = field(default_factory=dict)  # timestamp -> reason
    failed: dict[str, str] = field(default_factory=dict)  # timestamp -> why it could not go
    skipped: str | None = None  # why the namespace was left alone this pass
    # Each service's series (and the configured services') -> the policy it was checked against.
    policies: dict[str, str] = field(default_factory=dict)
    # Timestamp -> what of its policy keeps it (GFS rules, newest, verified, pinned).
    keeping: dict[str, set[str]] = field(default_factory=dict)
    # Kept backups that move colder, and those whose Object Lock is extended (upkeep.py).
    moves: dict[str, upkeep.Move] = field(default_factory=dict)
    extensions: dict[str, upkeep.LockExtension] = field(default_factory=dict)
    # Timestamp -> why its move or lock extension failed (the next pass tries again).
    upkeep_failed: dict[str, str] = field(default_factory=dict)


def namespace_policy(fleet: Fleet, namespace: str, policy: gfs.Policy | None = None) -> gfs.Policy:
    """RETENTION_KEEP_* with the namespace's own counts (what a service no longer in the
    services file takes); ConfigError if it keeps nothing."""
    policy = policy or gfs.Policy.from_settings(fleet.settings).overridden(
        fleet.config.retention.get(namespace)
    )
    if policy.keeps_nothing:
        raise ConfigError(
            f"the retention of namespace {namespace} keeps nothing ({policy.describe()}): "
            "set a count of RETENTION_KEEP_* or of its [retention] table above 0"
        )
    return policy


def service_policies(
    fleet: Fleet, namespace: str, policy: gfs.Policy | None = None
) -> ServicePolicies:
    """Each configured service's policy (`FleetConfig.policy_of`), and the namespace's for
    the others. `policy`, when given, stands for every one. ConfigError names the first
    service whose policy keeps nothing."""
    fallback = namespace_policy(fleet, namespace, policy)
    base = gfs.Policy.from_settings(fleet.settings)
    services: dict[str, gfs.Policy] = {}
    for name in sorted(fleet.config.namespaces.get(namespace, {})):
        own = policy or base.overridden(
            fleet.config.policy_of(namespace, name, fleet.settings).retention
        )
        if own.keeps_nothing:
            raise ConfigError(
                f"the retention of namespace {namespace} keeps nothing for service {name} "
                f"({own.describe()}): set a count above 0 in the service's retention table "
                f"([services.{name}.retention]), the namespace's [retention] or RETENTION_KEEP_*"
            )
        services[name] = own
    return ServicePolicies(services, fallback, fallback_note=NOT_CONFIGURED)


def plan_retention(
    fleet: Fleet,
    *,
    namespace: str,
    policy: gfs.Policy | None = None,
    being_read: Iterable[str] = (),
    now: datetime | None = None,
    force: bool = False,
) -> RetentionPlan:
    """What goes, what moves colder, which locks are extended; `being_read`: timestamps a
    reading mark is held on (a test restore); `force`: delete before a storage class's
    billed minimum has passed."""
    now = now or utcnow()
    policies = service_policies(fleet, namespace, policy)
    with session_scope(fleet.settings.database_url) as session:
        rows = queries.retention_facts(session, namespace=namespace)
        in_use = _read_by_restores(session, namespace, being_read)
        stored = stored_artifacts(session, namespace=namespace)
    candidates = [_candidate(row) for row in rows]
    plan = _plan(namespace, candidates, policies, rows, in_use)
    gone = sorted(set(plan.policies) - set(policies.services) - {service_series.UNKNOWN})
    if gone:
        log.warning(
            "retention of %s: %s no longer in the services file: their backups take the "
            "namespace's policy (%s)",
            namespace,
            ", ".join(gone),
            policies.fallback.describe(),
        )
    for candidate in sorted(candidates, key=lambda c: c.timestamp):
        stamp = candidate.timestamp
        if stamp in plan.keep:
            continue
        locked = locked_until(fleet.store, namespace, stamp, now=now)
        if locked is not None:
            plan.keep[stamp] = [f"object lock until {locked.isoformat()}"]
            continue
        why = service_series.why_not_kept(candidate, policies, by="retention")
        held = upkeep.billed_minimum(fleet.store, stored.get(stamp, []), now)
        if held is not None and not force:
            plan.keep[stamp] = [f"{held.describe()} (--force deletes it before)"]
            continue
        if held is not None:
            why = f"{why}; forced before its billed minimum ({held.describe()})"
        plan.delete[stamp] = why
    _plan_upkeep(fleet, plan, stored, set(in_use), now)
    return plan


def _plan_upkeep(
    fleet: Fleet,
    plan: RetentionPlan,
    stored: dict[str, list[StoredArtifact]],
    in_use: set[str],
    now: datetime,
) -> None:
    """The moves colder and the lock extensions of the backups the policy keeps."""
    store, settings = fleet.store, fleet.settings
    # Kept by its policy (not only by its lock or a restore reading it).
    kept = {stamp: rules for stamp, rules in plan.keeping.items() if rules and stamp in plan.keep}
    plan.moves = upkeep.plan_moves(store, settings.storage_class_map, kept, stored, leave=in_use)
    plan.extensions = upkeep.plan_lock_extensions(
        store, plan.namespace, kept, days=settings.aws_s3_object_lock_days, now=now
    )


def locked_until(
    store: ObjectStore, namespace: str, timestamp: str, *, now: datetime | None = None
) -> datetime | None:
    """The latest Object Lock retention still in force on the backup's objects, if any."""
    if not store.object_lock:
        return None
    now, latest = now or utcnow(), None
    for info in store.list(backup_prefix(namespace, timestamp)):
        until = store.locked_until(info.key)
        if until is not None and until > now and (latest is None or until > latest):
            latest = until
    return latest


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
            plans.append(plan_retention(fleet, namespace=ns, policy=policy, now=now, force=force))
            continue
        lock = _take_retention_lock(fleet, ns)
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
                    _give_up(plan, stamps[start:], "the retention lock was lost")
                    break
                _delete_batch(fleet, plan, stamps[start : start + DELETE_BATCH])
            _apply_upkeep(fleet, plan, lock, now)
        finally:
            lock.release()
        failures = {**plan.failed, **plan.upkeep_failed}
        report_retention(alerter_for(fleet), namespace=ns, store="primary", failures=failures)
    return plans


def _apply_upkeep(fleet: Fleet, plan: RetentionPlan, lock: NamespaceLock, now: datetime) -> None:
    """The planned moves, then the lock extensions, under the retention lock. A backup's
    failure is logged and recorded on the plan (and its entry dropped, so the plan says
    what was done); the next pass tries again."""
    work = [(stamp, "move") for stamp in sorted(plan.moves)]
    work += [(stamp, "lock extension") for stamp in sorted(plan.extensions)]
    for stamp, what in work:
        planned = plan.moves if what == "move" else plan.extensions
        try:
            if lock.lost.is_set():
                raise LockLost("the retention lock was lost")
            if what == "move":
                upkeep.move(
                    fleet.store,
                    fleet.settings.database_url,
                    namespace=plan.namespace,
                    timestamp=stamp,
                    planned=plan.moves[stamp],
                    now=now,
                )
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


def _take_retention_lock(fleet: Fleet, namespace: str) -> NamespaceLock | RetentionPlan:
    """The namespace's retention lock, or a plan that says why the namespace is skipped."""
    lock = retention_lock(fleet.settings, namespace, label="retention")
    try:
        lock.acquire()
    except NamespaceBusy as busy:  # a test restore, or another pass: the next pass does it
        log.warning("retention of %s skipped this pass: %s", namespace, busy)
        return RetentionPlan(namespace, skipped=str(busy))
    return lock


def _give_up(plan: RetentionPlan, stamps: list[str], why: str) -> None:
    for stamp in stamps:
        plan.failed[stamp] = why
        plan.delete.pop(stamp, None)


def apply_secondary_retention(
    fleet: Fleet, *, namespace: str | None = None, dry_run: bool = False
) -> list[RetentionPlan]:
    """The secondary store's own pass, with its own counts (SECONDARY_RETENTION_KEEP_*).

    Per service too: each service's series of what the secondary holds, under the
    secondary's counts (one policy for every service: the secondary's retention is
    its own, often longer, so the services file's tables do not shorten it). The
    store, not the catalog, says what the secondary holds (the primary's pass may
    have removed a backup's catalog row already): the services of such a backup
    come from its manifest, if it can be authenticated (workers/repository/
    authenticity.py), so a forged manifest cannot push real backups out of a
    service's series; those that cannot form one series of their own. Pins and
    verdicts still come from the catalog. Catalog rows are not touched here.
    """
    store, second = fleet.secondary, fleet.secondary_settings
    if store is None:
        return []
    policy = (
        gfs.Policy.from_settings(second) if second else gfs.Policy.from_settings(fleet.settings)
    )
    plans = []
    for ns in [namespace] if namespace else namespaces_of(fleet):
        lock = None if dry_run else _take_retention_lock(fleet, ns)
        if isinstance(lock, RetentionPlan):
            plans.append(lock)
            continue
        try:
            readers = set() if lock is None else backups_being_read(fleet.settings, ns)
            plans.append(_secondary_pass(fleet, store, policy, ns, readers, lock))
        finally:
            if lock is not None:
                lock.release()
    return plans


def _secondary_pass(
    fleet: Fleet,
    store: ObjectStore,
    policy: gfs.Policy,
    ns: str,
    being_read: set[str],
    lock: NamespaceLock | None,  # None: a dry run
) -> RetentionPlan:
    # Backups only: `<ns>/<timestamp>/manifest.json`; never `wal/` nor `user-events-audit/`.
    stamps = sorted(
        info.key.split("/")[1]
        for info in store.list(f"{ns}/")
        if info.key.count("/") == 2
        and info.key.endswith("/" + MANIFEST_NAME)
        and is_timestamp(info.key.split("/")[1])
    )
    with session_scope(fleet.settings.database_url) as session:
        rows = queries.retention_facts(session, namespace=ns, timestamps=stamps)
        in_use = _read_by_restores(session, ns, being_read)
    known = {row.timestamp: row for row in rows}
    candidates, unreadable = [], {}
    for stamp in stamps:
        if stamp in known:
            candidates.append(_candidate(known[stamp]))
            continue
        found = _uncatalogued(fleet, store, ns, stamp)
        if isinstance(found, Candidate):
            candidates.append(found)
        else:
            unreadable[stamp] = found
    policies = ServicePolicies({}, policy)
    plan = _plan(ns, candidates, policies, rows, in_use)
    for stamp, why in unreadable.items():  # judged at a pass that can read it
        plan.keep.setdefault(stamp, []).append(why)
    by = "the secondary store's retention"
    for candidate in candidates:
        stamp = candidate.timestamp
        if stamp in plan.keep:
            continue
        locked = locked_until(store, ns, stamp)
        if locked is not None:
            plan.keep[stamp] = [f"object lock until {locked.isoformat()}"]
            continue
        why = plan.delete[stamp] = service_series.why_not_kept(candidate, policies, by=by)
        if lock is None:
            continue
        if lock.lost.is_set():
            _give_up(plan, [stamp], "the retention lock was lost")
            continue
        try:
            delete_objects(store, namespace=ns, timestamp=stamp)
        except Exception as exc:
            plan.failed[stamp] = redact(str(exc), fleet.secrets())
            del plan.delete[stamp]
            continue
        record_system_event(
            namespace=ns,
            name="BackupDeleted",
            params={"namespace": ns, "timestamp": stamp, "reason": why, "store": "secondary"},
        )
    return plan


def _uncatalogued(fleet: Fleet, store: ObjectStore, ns: str, stamp: str) -> Candidate | str:
    """A backup only the store knows, with the services its authentic manifest lists (none
    if it is not authentic); or why its manifest could not be read this pass."""
    try:
        trusted = load_manifest(fleet, namespace=ns, timestamp=stamp, store=store)
    except (IntegrityError, NotFoundError) as exc:
        log.warning("secondary retention: %s/%s: services unknown: %s", ns, stamp, exc)
        return Candidate(stamp, ())
    except Exception as exc:  # a store that failed to answer: the next pass decides
        return f"its manifest could not be read: {redact(str(exc), fleet.secrets())}"
    return Candidate(stamp, tuple(trusted.manifest.services()))


class _Facts(Protocol):
    timestamp: str
    pinned: bool
    verified: str | None
    services: list[str]


def _candidate(row: _Facts) -> Candidate:
    return Candidate(row.timestamp, tuple(row.services), verified_good=row.verified == SUCCESS)


def _read_by_restores(
    session: Session, namespace: str, being_read: Iterable[str]
) -> dict[str, list[str]]:
    """Timestamp -> the Pending or Running restores (and test restores) reading that backup."""
    found: dict[str, list[str]] = {stamp: ["read by a test restore"] for stamp in being_read}
    for restore_id, stamp, status in queries.restores_reading(session, source_namespace=namespace):
        found.setdefault(stamp, []).append(f"read by restore {restore_id} ({status})")
    return found


def _plan(
    namespace: str,
    candidates: Sequence[Candidate],
    policies: ServicePolicies,
    rows: Sequence[_Facts],
    in_use: dict[str, list[str]],
) -> RetentionPlan:
    """What each service's series keeps, then whatever the counts say: pins and the
    backups restores are reading."""
    selection = service_series.select(candidates, policies)
    plan = RetentionPlan(
        namespace, keep=selection.keep, policies=selection.policies, keeping=selection.keeping
    )
    for row in rows:
        if row.pinned:
            plan.keep.setdefault(row.timestamp, []).append("pinned")
            plan.keeping.setdefault(row.timestamp, set()).add("pinned")
    for stamp, reasons in in_use.items():
        plan.keep.setdefault(stamp, []).extend(reasons)
    return plan


def _delete_batch(fleet: Fleet, plan: RetentionPlan, stamps: list[str]) -> None:
    """The objects of each backup, then their catalog rows in one transaction, then the events.

    A pass that dies in between leaves rows whose objects are gone: the next
    pass plans them again and finishes the job (deleting is idempotent).
    """
    gone = []
    for stamp in stamps:
        try:
            delete_objects(fleet.store, namespace=plan.namespace, timestamp=stamp)
            gone.append(stamp)
        except Exception as exc:
            log.error("retention: could not delete %s/%s: %s", plan.namespace, stamp, exc)
            plan.failed[stamp] = redact(str(exc), fleet.secrets())
            del plan.delete[stamp]
    with session_scope(fleet.settings.database_url) as session:
        # The database cascades to artifacts and parts, and unlinks verifications.
        queries.delete_backups(session, namespace=plan.namespace, timestamps=gone)
    for stamp in gone:
        reason = plan.delete[stamp]
        log.info("retention: deleted %s/%s: %s", plan.namespace, stamp, reason)
        record_system_event(
            namespace=plan.namespace,
            name="BackupDeleted",
            params={"namespace": plan.namespace, "timestamp": stamp, "reason": reason},
        )


def delete_objects(store: ObjectStore, *, namespace: str, timestamp: str) -> None:
    """The manifest first (the backup is then incomplete), then every other object."""
    store.delete(manifest_key(namespace, timestamp))
    for info in list(store.list(backup_prefix(namespace, timestamp))):
        store.delete(info.key)


def set_pinned(fleet: Fleet, *, namespace: str, timestamp: str, pinned: bool) -> bool:
    """Pin or unpin a backup; False if the catalog has no such backup."""
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if row is None:
            return False
        row.pinned = pinned
    record_system_event(
        namespace=namespace,
        name="BackupPinned" if pinned else "BackupUnpinned",
        params={"namespace": namespace, "timestamp": timestamp},
    )
    return True
