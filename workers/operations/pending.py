"""A backup request once its namespace is known: a Pending row, then the task, in that
order; the row forgotten again when the broker refuses the task, so nothing waits forever
and a request never queued is not a failed backup.

One flow for the API and the CLI, each handing in how it reaches the catalog: the API
through SQLAlchemy's sessions (operations.jobs), `backfleet backup` through its driver in
plain SQL (catalog.direct_rows), so that a command that writes one row does not load the
ORM before the worker can start. Nothing here imports SQLAlchemy or Celery.
"""

import logging
from collections.abc import Callable
from typing import Protocol

from workers.catalog.direct_rows import PendingBackup
from workers.errors import UnreachableError, reason_of
from workers.fleet import Fleet
from workers.queues import RUN_BACKUP, queue_of
from workers.redact import redact

log = logging.getLogger(__name__)

# (task name, kwargs, queue) -> task id: tasks.enqueue.celery_enqueue (the API) or
# tasks.messages.send_task (the CLI); the library stays below tasks/, so callers hand it in.
Enqueue = Callable[[str, dict[str, object], str], str]


class BackupRows(Protocol):
    """The catalog writes of a backup request, each its own transaction."""

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
        """The Pending row, unless a restore of the namespace or another backup is active
        (ConflictError naming it)."""
        ...

    def forget_unqueued_backup(self, backup_id: int) -> bool:
        """Delete a row the broker never took; False when a worker has it already."""
        ...

    def set_backup_task(self, backup_id: int, task_id: str) -> None:
        """Record the task id (unless a worker did first)."""
        ...


def request_backup(
    fleet: Fleet,
    rows: BackupRows,
    *,
    namespace: str,
    only_config: bool = False,
    trigger: str = "api",
    requested_by: str | None = None,
    customer: str | None = None,
    enqueue: Enqueue,
) -> PendingBackup:
    """Record a Pending backup and enqueue it; ConflictError if one is already active."""
    services = fleet.config.services_for_backup(namespace, only_config=only_config)
    backup = rows.create_backup(
        namespace=namespace,
        services=services,
        only_config=only_config,
        trigger=trigger,
        requested_by=requested_by,
        requested_customer=customer or None,
    )
    kwargs: dict[str, object] = {"namespace": namespace, "timestamp": backup.timestamp}
    try:
        task_id = enqueue(RUN_BACKUP, kwargs, queue_of(RUN_BACKUP))
    except Exception as exc:
        # Not deleted when a worker has it already: the message went out though sending
        # raised (e.g. on the sent event after it), and the request stands.
        if rows.forget_unqueued_backup(backup.id):
            raise broker_refused(fleet, "backup", exc) from None
        log.warning("backup %s was taken by a worker although sending it raised", backup.id)
        return backup
    rows.set_backup_task(backup.id, task_id)
    return backup


def broker_refused(fleet: Fleet, what: str, exc: BaseException) -> UnreachableError:
    """The error a request gets when the broker did not take its task: where the broker
    was looked for (its URL without a password) and the setting that says so."""
    secrets = fleet.secrets()
    where = redact(fleet.settings.broker_url, secrets)
    log.warning("the broker did not take a %s task: %s", what, redact(reason_of(exc), secrets))
    return UnreachableError(
        f"the broker at {where} (BROKER_URL) did not accept the {what} task "
        f"({type(exc).__name__}); nothing was queued or recorded: start the broker or "
        "fix BROKER_URL, then ask again"
    )
