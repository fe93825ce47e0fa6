"""Purging shipped user events from the catalog (tasks.audit.purge_user_events).

Only events at or below their namespace's `shipped_through` watermark and older
than the retention are deleted: an event not yet confirmed in the store stays,
whatever its age. Deletes go in bounded batches, each its own transaction.
"""

from datetime import datetime, timedelta

from sqlalchemy import delete, select

from workers.catalog.db import session_scope
from workers.catalog.models import UserEvent, UserEventShipping
from workers.timestamps import utcnow

DELETE_BATCH = 10_000


def purge_user_events(
    *, database_url: str, retention_days: int, now: datetime | None = None
) -> int:
    """Delete shipped events created more than `retention_days` ago; returns how many."""
    cutoff_ms = int(((now or utcnow()) - timedelta(days=retention_days)).timestamp() * 1000)
    with session_scope(database_url) as session:
        watermarks = list(
            session.execute(select(UserEventShipping.namespace, UserEventShipping.shipped_through))
        )
    deleted = 0
    for namespace, shipped_through in watermarks:
        while True:
            with session_scope(database_url) as session:
                doomed = (
                    select(UserEvent.id)
                    .where(
                        UserEvent.namespace == namespace,
                        UserEvent.id <= shipped_through,
                        UserEvent.created_at < cutoff_ms,
                    )
                    .limit(DELETE_BATCH)
                )
                ids = list(session.scalars(doomed))
                if ids:
                    session.execute(delete(UserEvent).where(UserEvent.id.in_(ids)))
            deleted += len(ids)
            if len(ids) < DELETE_BATCH:
                break
    return deleted
