"""Audit-trail tasks, queue `audit`: flush_user_events and purge_user_events."""

from typing import Any

from tasks.app import app
from workers.audit.jobs import flush_from_settings, purge_from_settings
from workers.fleet import current_fleet
from workers.queues import FLUSH_USER_EVENTS, PURGE_USER_EVENTS


@app.task(name=FLUSH_USER_EVENTS)
def flush_user_events() -> dict[str, Any]:
    result = flush_from_settings(current_fleet())
    return {"events": result.events, "batches": result.batches, "objects": len(result.objects)}


@app.task(name=PURGE_USER_EVENTS)
def purge_user_events() -> dict[str, Any]:
    return {"deleted": purge_from_settings(current_fleet().settings)}
