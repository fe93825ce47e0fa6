"""The secondary store's own pass, with its own counts (SECONDARY_RETENTION_KEEP_*)."""

import logging

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import IntegrityError, NotFoundError
from workers.fleet import Fleet
from workers.operations import gfs, service_series
from workers.operations.locks import NamespaceLock, backups_being_read
from workers.operations.retention.deletion import delete_objects, record_deleted
from workers.operations.retention.lock import give_up, take_retention_lock
from workers.operations.retention.plan import (
    RetentionPlan,
    base_plan,
    candidate_of,
    locked_until,
    read_by_restores,
)
from workers.operations.service_series import Candidate, ServicePolicies
from workers.redact import redact
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import MANIFEST_NAME
from workers.repository.namespaces import namespaces_of
from workers.stores.base import ObjectStore
from workers.timestamps import is_timestamp

log = logging.getLogger(__name__)


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
        lock = None if dry_run else take_retention_lock(fleet, ns)
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
    stamps = sorted(
        info.key.split("/")[1]
        for info in store.list(f"{ns}/")
        # Backups only: `<ns>/<timestamp>/manifest.json`; never `wal/` nor `user-events-audit/`.
        if info.key.count("/") == 2
        and info.key.endswith("/" + MANIFEST_NAME)
        and is_timestamp(info.key.split("/")[1])
    )
    with session_scope(fleet.settings.database_url) as session:
        rows = queries.retention_facts(session, namespace=ns, timestamps=stamps)
        in_use = read_by_restores(session, ns, being_read)
    known = {row.timestamp: row for row in rows}
    candidates, unreadable = [], {}
    for stamp in stamps:
        if stamp in known:
            candidates.append(candidate_of(known[stamp]))
            continue
        found = _uncatalogued(fleet, store, ns, stamp)
        if isinstance(found, Candidate):
            candidates.append(found)
        else:
            unreadable[stamp] = found
    policies = ServicePolicies({}, policy)
    plan = base_plan(ns, candidates, policies, rows, in_use)
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
            give_up(plan, [stamp], "the retention lock was lost")
            continue
        try:
            delete_objects(store, namespace=ns, timestamp=stamp)
        except Exception as exc:
            plan.failed[stamp] = redact(str(exc), fleet.secrets())
            del plan.delete[stamp]
            continue
        record_deleted(namespace=ns, timestamp=stamp, reason=why, store="secondary")
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
