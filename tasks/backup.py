"""tasks.backup.run_backup: on-demand (a Pending row exists) or scheduled (it makes one)."""

import logging
from typing import Any

from celery import Task

from workers.app import app
from workers.audit.operations import backup_ended
from workers.backup_run import run_backup as perform_backup
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.errors import ConflictError
from workers.fleet import current_fleet
from workers.jobs import services_for_backup

log = logging.getLogger(__name__)


@app.task(name="tasks.backup.run_backup", bind=True)
def run_backup(
    self: Task,
    namespace: str | None = None,
    timestamp: str | None = None,
    only_config: bool = False,
) -> dict[str, Any]:
    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    if timestamp is None:
        # A scheduled run: the task id makes the row, so a redelivery finds it again.
        services = services_for_backup(fleet, namespace=namespace, only_config=only_config)
        try:
            with session_scope(fleet.settings.database_url) as session:
                backup = queries.backup_by_task(
                    session, task_id=self.request.id
                ) or queries.create_backup(
                    session,
                    namespace=namespace,
                    services=services,
                    only_config=only_config,
                    trigger="schedule",
                    task_id=self.request.id,
                )
                timestamp = backup.timestamp
        except ConflictError as exc:
            log.warning("scheduled backup of %s skipped: %s", namespace, exc)
            return {"namespace": namespace, "status": "Skipped", "reason": str(exc)}
    outcome = perform_backup(fleet, namespace=namespace, timestamp=timestamp)
    backup_ended(fleet.settings.database_url, namespace=namespace, timestamp=timestamp)
    return {
        "namespace": outcome.namespace,
        "timestamp": outcome.timestamp,
        "status": outcome.status,
        "error": outcome.error,
    }
