"""Purging shipped user events from the catalog (tasks.audit.purge_user_events).

Only events at or below their namespace's `shipped_through` watermark and older
than the retention are deleted: an event not yet confirmed in the store stays,
whatever its age. Deletes go in bounded batches, each its own transaction.
"""

from datetime import datetime, timedelta

from workers.audit import catalog
from workers.catalog.db import session_scope
from workers.timestamps import utcnow

DELETE_BATCH = 10_000


def purge_user_events(
    *, database_url: str, retention_days: int, now: datetime | None = None
) -> int:
    """Delete shipped events created more than `retention_days` ago; returns how many."""
    cutoff_ms = int(((now or utcnow()) - timedelta(days=retention_days)).timestamp() * 1000)
    with session_scope(database_url) as session:
        watermarks = catalog.watermarks(session)
    deleted = 0
    for namespace, shipped_through in watermarks:
        while True:
            with session_scope(database_url) as session:
                count = catalog.purge_batch(
                    session,
                    namespace=namespace,
                    through=shipped_through,
                    before_ms=cutoff_ms,
                    limit=DELETE_BATCH,
                )
            deleted += count
            if count < DELETE_BATCH:
                break
    return deleted
