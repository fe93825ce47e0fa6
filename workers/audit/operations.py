"""Backups and restores as audit events: who, when, what, with what result.

Called where a backup or restore ends (tasks/backup.py, tasks/restore.py).
Reads the finished row from the catalog and records it through
`record_system_event`; never raises, so the audit trail cannot fail the work.
"""

import logging

from workers.audit.user_events import payload_json, record_system_event
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import SUCCESS
from workers.redact import redact
from workers.settings import get_settings

log = logging.getLogger(__name__)


def _code(status: str) -> int:
    return 200 if status == SUCCESS else 500


def _enabled() -> bool:
    try:
        return get_settings().enable_user_events
    except Exception:
        return False


def backup_ended(database_url: str, *, namespace: str, timestamp: str) -> None:
    """Record a finished backup: timestamp, services, bytes, each artifact's SHA-256."""
    if not _enabled():
        return
    try:
        with session_scope(database_url) as session:
            backup = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
            if backup is None:
                return
            artifacts = [
                {"key": a.key, "size": a.size, "sha256": a.sha256, "service": a.service}
                for a in backup.artifacts
            ]
            status, services, size = backup.status, list(backup.services), backup.size or 0
            who, trigger, error = backup.requested_by, backup.trigger, backup.error
            warning = backup.warning
            customer = backup.requested_customer or ""
    except Exception as exc:
        log.warning(
            "could not read backup %s/%s for the audit trail: %s",
            namespace,
            timestamp,
            redact(str(exc)),
        )
        return
    record_system_event(
        namespace=namespace,
        name="Backup",
        params={
            "timestamp": timestamp,
            "status": status,
            "trigger": trigger,
            "services": ",".join(services),
            "bytes": str(size),
        },
        payload=payload_json({"artifacts": artifacts, "error": error, "warning": warning}),
        response_code=_code(status),
        user_email=who or "backfleet",
        customer_name=customer,
    )


def restore_ended(database_url: str, *, restore_id: int) -> None:
    """Record a finished restore: who asked, from which backup, into which namespace.

    A restore from another namespace is recorded in both trails (the source's
    only where this fleet configures it).
    """
    if not _enabled():
        return
    try:
        with session_scope(database_url) as session:
            restore = queries.get_restore(session, restore_id=restore_id)
            if restore is None:
                return
            namespace, source, timestamp = (
                restore.namespace,
                restore.source_namespace,
                restore.timestamp,
            )
            status, services, who = restore.status, list(restore.services), restore.requested_by
            skipped, error, url = list(restore.skipped), restore.error, restore.backup_url
            customer = restore.requested_customer or ""
    except Exception as exc:
        log.warning(
            "could not read restore %s for the audit trail: %s", restore_id, redact(str(exc))
        )
        return
    record_system_event(
        namespace=namespace,
        name="Restore",
        params={
            "timestamp": timestamp,
            "sourceNamespace": source,
            "status": status,
            "services": ",".join(services),
            "skipped": ",".join(skipped),
            "backupUrl": url,
        },
        payload=payload_json({"error": error}),
        response_code=_code(status),
        user_email=who or "backfleet",
        customer_name=customer,
        also_in=[source],  # the source's trail shows who read its backup
    )
