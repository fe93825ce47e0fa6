"""tasks.restore.run_restore: restore the services a Pending restore row names.

It holds its namespace's lock, so no backup of the namespace runs meanwhile;
a busy namespace makes it wait, up to BACKUP_TIME_LIMIT, then it fails. The
lock is strict: once it is lost (taken, expired, or Redis cannot confirm it)
the restore stops before its next commit and fails, the target untouched.
A retention pass deleting in the namespace the backup is read from makes it
wait too (workers/operations/retention/ says why that suffices).
"""

from typing import Any

from celery import Task

from tasks.app import app
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import FAILED, SUCCESS
from workers.fleet import current_fleet
from workers.operations.locks import (
    NamespaceBusy,
    namespace_lock,
    wait_while_moving,
    wait_while_retention,
)
from workers.operations.restore import rehydrate_first
from workers.operations.restore import run_restore as perform_restore
from workers.queues import RUN_RESTORE


# Time limits: the app's BACKUP_SOFT_TIME_LIMIT and BACKUP_TIME_LIMIT (tasks/app.py).
@app.task(name=RUN_RESTORE, bind=True)
def run_restore(
    self: Task,
    restore_id: int,
    namespace: str | None = None,
    source_namespace: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The restore row says everything; namespace and timestamp also label the task in Flower."""
    fleet = current_fleet()
    settings = fleet.settings
    with session_scope(settings.database_url) as session:
        row = queries.get_restore(session, restore_id=restore_id)
        target = row.namespace if row is not None else (namespace or "")
        backup = row.timestamp if row is not None else (timestamp or "")
        source = row.source_namespace if row is not None else (source_namespace or target)
    # Archived artifacts are asked back and waited for before the target is locked.
    rehydrate_first(fleet, restore_id=restore_id)
    lock = namespace_lock(settings, target, label=f"restore of {backup}", strict=True)
    try:
        lock.acquire()
        try:  # our row exists: a retention pass that starts now keeps the backup
            wait_while_retention(settings, source)  # one that runs may be deleting it
            wait_while_moving(settings, source, backup, wait=0)  # or moving it colder
        except NamespaceBusy:
            lock.release()
            raise
    except NamespaceBusy as busy:
        countdown = settings.busy_retry_countdown
        if self.request.retries * countdown < settings.backup_time_limit:
            raise self.retry(countdown=countdown, max_retries=None) from None
        with session_scope(settings.database_url) as session:
            row = queries.get_restore(session, restore_id=restore_id)
            if row is not None and row.status not in (SUCCESS, FAILED):
                row.status, row.error = FAILED, f"the namespace stayed busy: {busy}"
        return {"restore_id": restore_id, "status": FAILED}
    try:
        # The alert and audit event come from run_restore, once, from the attempt that finished it.
        status = perform_restore(fleet, restore_id=restore_id, check_lock=lock.confirm)
        return {"restore_id": restore_id, "status": status}
    finally:
        lock.release()
