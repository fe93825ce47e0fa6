"""Pinning a backup: retention never deletes a pinned one."""

from workers.audit.user_events import record_system_event
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.fleet import Fleet


def set_pinned(fleet: Fleet, *, namespace: str, timestamp: str, pinned: bool) -> bool:
    """Pin or unpin a backup; False if the catalog has no such backup."""
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        if row is None:
            return False
        row.pinned = pinned
    record_system_event(
        namespace=namespace,
        name="BackupPinned" if pinned else "BackupUnpinned",
        params={"namespace": namespace, "timestamp": timestamp},
    )
    return True
