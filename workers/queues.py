"""The fleet's Celery task names and queues: the one table that routing (tasks/app.py), the
beat schedule, enqueueing (operations.jobs), the worker CLI, `up` and metrics read.

Task names are a contract (DESIGN.md lists those users call): never rename one.
"""

QUEUES = ("backup", "restore", "audit", "verify", "maintenance")
ALL_QUEUES = ",".join(QUEUES)  # as `celery worker -Q` and `backfleet worker --queues` take them

RUN_BACKUP = "tasks.backup.run_backup"
RUN_RESTORE = "tasks.restore.run_restore"
FLUSH_USER_EVENTS = "tasks.audit.flush_user_events"
PURGE_USER_EVENTS = "tasks.audit.purge_user_events"
VERIFY_BACKUPS = "tasks.verify.verify_backups"
TEST_RESTORE = "tasks.verify.test_restore"
APPLY_RETENTION = "tasks.retention.apply_retention"
ABORT_STALE_UPLOADS = "tasks.retention.abort_stale_uploads"
RECONCILE = "tasks.maintenance.reconcile"
CHECK_STALENESS = "tasks.alerts.check_staleness"
DELIVER_ALERT = "tasks.alerts.deliver_alert"
COPY_TO_SECONDARY = "tasks.replicate.copy_to_secondary"

# Every task and the queue it runs on; a task missing here would land on the default queue
# (tests/unit/test_queues.py checks that the app registers no other).
TASK_QUEUES: dict[str, str] = {
    RUN_BACKUP: "backup",
    RUN_RESTORE: "restore",
    FLUSH_USER_EVENTS: "audit",
    PURGE_USER_EVENTS: "audit",
    VERIFY_BACKUPS: "verify",
    TEST_RESTORE: "verify",
    APPLY_RETENTION: "maintenance",
    ABORT_STALE_UPLOADS: "maintenance",
    RECONCILE: "maintenance",
    CHECK_STALENESS: "maintenance",
    DELIVER_ALERT: "maintenance",
    COPY_TO_SECONDARY: "maintenance",
}


def queue_of(task: str) -> str:
    """The queue `task` runs on (KeyError for a name that is not in the table)."""
    return TASK_QUEUES[task]
