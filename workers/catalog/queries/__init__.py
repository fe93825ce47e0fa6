"""Keyword-only data access. Callers own the session and its transaction.

One module per table or concern: backups, artifacts (and their upload parts), restores,
verified (which backups hold a service, what their read-backs said), base_backups (a
`pitr` service's, for its recoverable window), wal_upkeep (what retention and
verification read and write of the WAL of `pitr` services). Import from here:
`from workers.catalog import queries` then `queries.get_backup(...)`.
"""

from workers.catalog.queries.artifacts import (
    artifacts_of_upload,
    forget_parts,
    mark_size_anomalies,
    running_upload_ids,
    services_in_backups,
    upsert_artifact,
)
from workers.catalog.queries.backups import (
    active_backup,
    active_backups,
    backup_by_task,
    backup_namespaces,
    create_backup,
    delete_backups,
    get_backup,
    latest_backup,
    list_backups,
    lock_backup,
    newest_success,
    record_skipped_run,
    retention_facts,
    uncopied_backups,
)
from workers.catalog.queries.base_backups import BaseBackupRow, base_backups
from workers.catalog.queries.restores import (
    active_restore,
    active_restores,
    create_restore,
    finish_restore_attempt,
    get_restore,
    latest_restore,
    lock_restore,
    restores_reading,
    set_restore_message,
)
from workers.catalog.queries.verified import (
    last_read_failed,
    last_verified_newest,
    least_recently_verified,
    newest_success_holding,
    newest_verified_good,
)
from workers.catalog.queries.wal_upkeep import (
    delete_wal_rows,
    failed_wal,
    record_wal_check,
    wal_services,
    wal_to_check,
)

__all__ = [
    "BaseBackupRow",
    "active_backup",
    "active_backups",
    "active_restore",
    "active_restores",
    "artifacts_of_upload",
    "backup_by_task",
    "backup_namespaces",
    "base_backups",
    "create_backup",
    "create_restore",
    "delete_backups",
    "delete_wal_rows",
    "failed_wal",
    "finish_restore_attempt",
    "forget_parts",
    "get_backup",
    "get_restore",
    "last_read_failed",
    "last_verified_newest",
    "latest_backup",
    "latest_restore",
    "least_recently_verified",
    "list_backups",
    "lock_backup",
    "lock_restore",
    "mark_size_anomalies",
    "newest_success",
    "newest_success_holding",
    "newest_verified_good",
    "record_skipped_run",
    "record_wal_check",
    "restores_reading",
    "retention_facts",
    "running_upload_ids",
    "services_in_backups",
    "set_restore_message",
    "uncopied_backups",
    "upsert_artifact",
    "wal_services",
    "wal_to_check",
]
