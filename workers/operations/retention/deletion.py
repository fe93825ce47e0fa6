"""Deleting backups: the manifest first, then every other object, then the catalog
rows in batches, each deletion an audit event with its reason."""

import logging

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.operations.retention.plan import RetentionPlan
from workers.redact import redact
from workers.repository.manifest import backup_prefix, manifest_key
from workers.stores.base import ObjectStore

log = logging.getLogger(__name__)


DELETE_BATCH = 100  # backups whose catalog rows go in one transaction


def delete_batch(fleet: Fleet, plan: RetentionPlan, stamps: list[str]) -> None:
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
        record_deleted(namespace=plan.namespace, timestamp=stamp, reason=reason)


def delete_objects(store: ObjectStore, *, namespace: str, timestamp: str) -> None:
    """The manifest first (the backup is then incomplete), then every other object."""
    store.delete(manifest_key(namespace, timestamp))
    for info in list(store.list(backup_prefix(namespace, timestamp))):
        store.delete(info.key)


def record_deleted(
    *, namespace: str, timestamp: str, reason: str, store: str | None = None
) -> None:
    """The BackupDeleted audit event (`store`: "secondary" for the secondary's pass)."""
    params = {"namespace": namespace, "timestamp": timestamp, "reason": reason}
    record_system_event(
        namespace=namespace,
        name="BackupDeleted",
        params=params if store is None else {**params, "store": store},
    )
