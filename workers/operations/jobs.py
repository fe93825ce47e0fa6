"""Requesting backups and restores: what the API and the CLI call (the "request" verb).

A request checks what it can at once (namespace, services, the backup exists,
nothing collides), records a Pending row, then enqueues the task. If the
broker cannot take the task, the row is removed again and the caller gets an
UnreachableError naming the broker and BROKER_URL: nothing waits forever, and a
request that was never queued is not a failed backup.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from workers.audit import scope as audit_scope
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.direct_rows import PendingBackup, restore_in_the_way
from workers.catalog.models import PENDING, SUCCESS, Backup, Restore
from workers.errors import ConflictError, ForbiddenError, InvalidRequestError
from workers.fleet import Fleet
from workers.operations import pending
from workers.operations.overrides import override_note
from workers.operations.pending import Enqueue as Enqueue  # re-exported: callers type with it
from workers.operations.pending import broker_refused
from workers.pitr.to_time import choose_backup
from workers.queues import RUN_RESTORE, queue_of
from workers.repository.authenticity import load_manifest
from workers.repository.manifest import Manifest

log = logging.getLogger(__name__)


def request_backup(
    fleet: Fleet,
    *,
    namespace: str,
    only_config: bool = False,
    trigger: str = "api",
    requested_by: str | None = None,
    customer: str | None = None,
    enqueue: Enqueue,
) -> PendingBackup:
    """Record a Pending backup and enqueue it (operations/pending.py), through SQLAlchemy's
    sessions; ConflictError if one is already active."""
    return pending.request_backup(
        fleet,
        SessionRows(fleet.settings.database_url),
        namespace=namespace,
        only_config=only_config,
        trigger=trigger,
        requested_by=requested_by,
        customer=customer,
        enqueue=enqueue,
    )


class SessionRows:
    """A backup request's rows (pending.BackupRows) through the catalog's sessions."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_backup(
        self,
        *,
        namespace: str,
        services: list[str],
        only_config: bool,
        trigger: str,
        requested_by: str | None,
        requested_customer: str | None,
    ) -> PendingBackup:
        with session_scope(self.url) as session:
            if restoring := queries.active_restore(session, namespace=namespace):
                raise restore_in_the_way(namespace, restoring.timestamp, restoring.status)
            backup = queries.create_backup(
                session,
                namespace=namespace,
                services=services,
                only_config=only_config,
                trigger=trigger,
                requested_by=requested_by,
                requested_customer=requested_customer,
            )
            return PendingBackup(id=backup.id, timestamp=backup.timestamp)

    def forget_unqueued_backup(self, backup_id: int) -> bool:
        return _forget_unqueued(self.url, Backup, backup_id)

    def set_backup_task(self, backup_id: int, task_id: str) -> None:
        with session_scope(self.url) as session:
            row = session.get(Backup, backup_id)
            if row is not None and row.task_id is None:
                row.task_id = task_id


def _forget_unqueued(url: str, model: type[Backup] | type[Restore], row_id: int) -> bool:
    """A request the broker never took leaves no row: a Failed one would show as the
    namespace's latest backup and count as a failure, though nothing was tried. False
    when a worker has the row already (the message went out though sending raised, e.g.
    on the sent event after it): the request stands, and the caller says so."""
    with session_scope(url) as session:
        row = session.get(model, row_id)
        if isinstance(row, Backup | Restore) and row.status == PENDING:
            session.delete(row)
            return True
        return row is None


# Fixed, so the answer says nothing about whether that namespace exists in the store.
UNCONFIGURED_SOURCE = (
    "the source namespace is not configured in this fleet: restoring from it needs "
    "BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES=true "
    "(or `backfleet restore --allow-unconfigured-source`)"
)


@dataclass(frozen=True)
class RestorePlan:
    source_namespace: str
    timestamp: str
    services: list[str]
    skipped: list[str]
    backup_url: str
    overridden: list[str] = field(default_factory=list)  # what allowUnsigned let through


def read_manifest(
    fleet: Fleet, *, namespace: str, timestamp: str, allow_unsigned: bool = False
) -> Manifest:
    """The authentic manifest (workers/repository/authenticity.py); NotFoundError if absent."""
    return load_manifest(
        fleet, namespace=namespace, timestamp=timestamp, allow_unsigned=allow_unsigned
    ).manifest


def plan_restore(
    fleet: Fleet,
    *,
    namespace: str,
    source_namespace: str,
    timestamp: str,
    skip: Iterable[str],
    allow_unsigned: bool = False,
) -> RestorePlan:
    """Check that the backup exists and fits the target namespace, before anything is queued."""
    with session_scope(fleet.settings.database_url) as session:
        known = queries.get_backup(session, namespace=source_namespace, timestamp=timestamp)
        if known is not None and known.status != SUCCESS:
            raise ConflictError(
                f"backup {timestamp} of namespace {source_namespace} is {known.status}: "
                "only a successful backup can be restored",
                timestamp=timestamp,
            )
    # Catalog or not, the manifest in the store says what the backup holds, once authenticated.
    trusted = load_manifest(
        fleet, namespace=source_namespace, timestamp=timestamp, allow_unsigned=allow_unsigned
    )
    manifest = trusted.manifest
    targets = fleet.config.services_of(namespace)
    unknown = sorted(set(skip) - set(manifest.services()))
    if unknown:  # a typo must not restore the very service it meant to protect
        raise InvalidRequestError(
            f"unknown service(s) {', '.join(unknown)}: backup {timestamp} of namespace "
            f"{source_namespace} holds {', '.join(sorted(manifest.services()))}"
        )
    skipped = sorted(set(skip))
    services = [service for service in manifest.services() if service not in skipped]
    if not services:
        raise InvalidRequestError("every service of the backup is disabled: nothing to restore")
    for service in services:
        spec = targets.get(service)
        if spec is None:
            raise InvalidRequestError(
                f"service {service} of the backup is not configured in namespace {namespace}; "
                "disable it to skip it"
            )
        entry = manifest.artifact(service)
        assert entry is not None
        if entry.source.get("kind", spec.kind) != spec.kind:
            raise InvalidRequestError(
                f"service {service} was backed up as {entry.source.get('kind')} "
                f"but is configured as {spec.kind} in namespace {namespace}"
            )
    return RestorePlan(
        source_namespace=source_namespace,
        timestamp=timestamp,
        services=services,
        skipped=skipped,
        backup_url=fleet.store.url_for(source_namespace, timestamp),
        overridden=trusted.overridden,
    )


def request_restore(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str | None,
    source_namespace: str | None = None,
    skip: Iterable[str] = (),
    requested_by: str | None = None,
    customer: str | None = None,
    enqueue: Enqueue,
    allow_unconfigured_source: bool | None = None,
    allow_unsigned: bool = False,
    target_time: datetime | None = None,
) -> Restore:
    """Record a Pending restore of `timestamp` into `namespace` and enqueue it.

    With `target_time` (a restore to a moment, pitr/to_time.py), `timestamp` may be None:
    the fleet picks the backup whose base backups the WAL replays to that moment; a
    target outside a service's recoverable window is an InvalidRequestError naming it.

    A source namespace this fleet does not configure is refused, before the store
    is read, unless `allow_unconfigured_source` (by default the setting
    BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES) allows it. `allow_unsigned`
    accepts a backup that cannot be authenticated (and, with encryption
    configured, unencrypted artifacts); the override is recorded on the restore
    row (its error starts with overrides.ALLOW_UNSIGNED_NOTE) and logged.
    """
    fleet.config.services_of(namespace)  # the target must be configured
    skip = list(skip)
    source = source_namespace or namespace
    if allow_unconfigured_source is None:
        allow_unconfigured_source = fleet.settings.backfleet_allow_unconfigured_source_namespaces
    if source not in fleet.config.namespaces and not allow_unconfigured_source:
        raise ForbiddenError(UNCONFIGURED_SOURCE)
    for acted_on in (namespace, source):
        audit_scope.acted_on(acted_on)  # an API call is recorded in both trails
    if target_time is not None:
        timestamp = choose_backup(
            fleet,
            namespace=namespace,
            source_namespace=source,
            skip=skip,
            target=target_time,
            timestamp=timestamp,
        ).timestamp
    if timestamp is None:
        raise InvalidRequestError("a restore needs the backup's timestamp, or a targetTime")
    plan = plan_restore(
        fleet,
        namespace=namespace,
        source_namespace=source,
        timestamp=timestamp,
        skip=skip,
        allow_unsigned=allow_unsigned,
    )
    url = fleet.settings.database_url
    with session_scope(url) as session:
        if running := queries.active_backup(session, namespace=namespace):
            raise ConflictError(
                f"backup {running.timestamp} of namespace {namespace} is {running.status}",
                timestamp=running.timestamp,
            )
        restore = queries.create_restore(
            session,
            namespace=namespace,
            source_namespace=plan.source_namespace,
            timestamp=timestamp,
            services=plan.services,
            skipped=plan.skipped,
            backup_url=plan.backup_url,
            requested_by=requested_by,
            requested_customer=customer or None,
            target_time=target_time,
        )
        if allow_unsigned:
            restore.error = override_note(plan.overridden, requested_by)
            log.warning(
                "restore %s of %s/%s into %s: %s",
                restore.id,
                plan.source_namespace,
                timestamp,
                namespace,
                restore.error,
            )
    try:
        # namespace and timestamp are labels: what Flower shows of the task
        labels = {"namespace": namespace, "source_namespace": plan.source_namespace}
        task_kwargs: dict[str, object] = {
            "restore_id": restore.id,
            **labels,
            "timestamp": timestamp,
        }
        task_id = enqueue(RUN_RESTORE, task_kwargs, queue_of(RUN_RESTORE))
    except Exception as exc:
        if _forget_unqueued(url, Restore, restore.id):
            raise broker_refused(fleet, "restore", exc) from None
        log.warning("restore %s was taken by a worker although sending it raised", restore.id)
        return restore
    with session_scope(url) as session:
        row = session.get(Restore, restore.id)
        if row is not None:
            row.task_id = task_id
    return restore
