"""A namespace's retention plan: what its policies keep, what goes and why, what
moves colder and whose Object Lock is extended; nothing is changed here."""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import SUCCESS
from workers.catalog.tiers import StoredArtifact, stored_artifacts
from workers.fleet import Fleet
from workers.operations import gfs, service_series, upkeep
from workers.operations.retention.policies import service_policies
from workers.operations.retention.wal_plan import WalPrune, base_backups, keep_windows
from workers.operations.service_series import Candidate, ServicePolicies
from workers.repository.manifest import backup_prefix
from workers.stores.base import ObjectStore
from workers.timestamps import utcnow

log = logging.getLogger(__name__)


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
    # The WAL of `pitr` services that goes (or would go), per service and cluster (wal_plan.py).
    wal: list[WalPrune] = field(default_factory=list)


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
        in_use = read_by_restores(session, namespace, being_read)
        stored = stored_artifacts(session, namespace=namespace)
        bases = base_backups(session, namespace)
    candidates = [candidate_of(row) for row in rows]
    plan = base_plan(namespace, candidates, policies, rows, in_use)
    # Each pitr service's window needs a base backup from before its start.
    keep_windows(
        fleet, namespace=namespace, bases=bases, keep=plan.keep, keeping=plan.keeping, now=now
    )
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
    plan.moves = upkeep.plan_moves(
        store, settings.storage_class_map, kept, stored, leave=in_use, now=now
    )
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


class Facts(Protocol):
    timestamp: str
    pinned: bool
    verified: str | None
    services: list[str]


def candidate_of(row: Facts) -> Candidate:
    return Candidate(row.timestamp, tuple(row.services), verified_good=row.verified == SUCCESS)


def read_by_restores(
    session: Session, namespace: str, being_read: Iterable[str]
) -> dict[str, list[str]]:
    """Timestamp -> the Pending or Running restores (and test restores) reading that backup."""
    found: dict[str, list[str]] = {stamp: ["read by a test restore"] for stamp in being_read}
    for restore_id, stamp, status in queries.restores_reading(session, source_namespace=namespace):
        found.setdefault(stamp, []).append(f"read by restore {restore_id} ({status})")
    return found


def base_plan(
    namespace: str,
    candidates: Sequence[Candidate],
    policies: ServicePolicies,
    rows: Sequence[Facts],
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
