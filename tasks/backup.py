"""tasks.backup.run_backup: on-demand (a Pending row exists) or scheduled (it makes one).

The namespace lock is taken before anything is written, so two deliveries of
one backup, or a backup and a restore of one namespace, never run at once. A
busy namespace makes the task wait (a retry with a countdown, never longer
than the visibility timeout); a scheduled run that waited SCHEDULED_BACKUP_WAIT
in vain is skipped and recorded in the catalog.
"""

import logging
import time
from typing import Any

from celery import Task

from tasks.app import app
from workers.audit.operations import backup_ended
from workers.catalog import queries
from workers.catalog.attempts import StopJob
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS
from workers.errors import ConflictError
from workers.fleet import Fleet, current_fleet
from workers.operations.backup import run_backup as perform_backup
from workers.operations.locks import NamespaceBusy, namespace_lock
from workers.queues import RUN_BACKUP

log = logging.getLogger(__name__)


# Time limits: the app's BACKUP_SOFT_TIME_LIMIT and BACKUP_TIME_LIMIT (tasks/app.py).
@app.task(name=RUN_BACKUP, bind=True)
def run_backup(
    self: Task,
    namespace: str | None = None,
    timestamp: str | None = None,
    only_config: bool = False,
    services: list[str] | None = None,
    schedule: str | None = None,
) -> dict[str, Any]:
    started = time.monotonic()  # the task's time limits count from here (its hooks' too)
    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    lock = namespace_lock(fleet.settings, namespace, label=f"backup {timestamp or '(scheduled)'}")
    try:
        lock.acquire()
    except NamespaceBusy as busy:
        return _namespace_busy(self, fleet, namespace, timestamp, str(busy), schedule, services)
    try:
        if timestamp is None:
            try:
                timestamp = _scheduled_row(self, fleet, namespace, only_config, services)
            except ConflictError as exc:  # an on-demand backup is queued for it
                lock.release()
                return _namespace_busy(self, fleet, namespace, None, str(exc), schedule, services)
        outcome = perform_backup(
            fleet,
            namespace=namespace,
            timestamp=timestamp,
            lock_lost=lock.lost.is_set,
            started=started,
        )
        if outcome.ran:  # a redelivery of finished work records no second event
            backup_ended(fleet.settings.database_url, namespace=namespace, timestamp=timestamp)
    except StopJob as stop:
        log.error("%s", stop)
        return {"namespace": namespace, "timestamp": timestamp, "status": "Stopped"}
    finally:
        lock.release()
    return {
        "namespace": outcome.namespace,
        "timestamp": outcome.timestamp,
        "status": outcome.status,
        "error": outcome.error,
    }


def _scheduled_row(
    task: Task, fleet: Fleet, namespace: str, only_config: bool, services: list[str] | None
) -> str:
    """The row of a scheduled run, made from the task id so a redelivery finds it again."""
    names = services or fleet.config.services_for_backup(namespace, only_config=only_config)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.backup_by_task(session, task_id=task.request.id) or queries.create_backup(
            session,
            namespace=namespace,
            services=sorted(names),
            only_config=only_config,
            trigger="schedule",
            task_id=task.request.id,
        )
        return backup.timestamp


def _namespace_busy(
    task: Task,
    fleet: Fleet,
    namespace: str,
    timestamp: str | None,
    reason: str,
    schedule: str | None,
    services: list[str] | None,
) -> dict[str, Any]:
    """Wait for the namespace with a retry, or give up: skip a scheduled run, fail a request."""
    settings = fleet.settings
    countdown = settings.busy_retry_countdown
    patience = settings.scheduled_backup_wait if timestamp is None else settings.backup_time_limit
    if task.request.retries * countdown < patience:
        log.info("backup of %s waits %s s: %s", namespace, countdown, reason)
        raise task.retry(countdown=countdown, max_retries=None)
    with session_scope(settings.database_url) as session:
        if timestamp is None:
            log.warning("scheduled backup of %s skipped: %s", namespace, reason)
            queries.record_skipped_run(
                session,
                namespace=namespace,
                schedule=schedule or "regular",
                services=sorted(services or []),
                reason=reason,
                task_id=task.request.id,
            )
            return {"namespace": namespace, "status": "Skipped", "reason": reason}
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if row is not None and row.status not in (SUCCESS, FAILED):
            row.status, row.error = FAILED, f"the namespace stayed busy: {reason}"
    return {"namespace": namespace, "timestamp": timestamp, "status": FAILED, "reason": reason}
