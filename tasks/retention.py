"""Maintenance tasks (queue `maintenance`): tasks.retention.abort_stale_uploads."""

from typing import Any

from workers.app import app
from workers.fleet import current_fleet
from workers.stale_uploads import abort_stale_uploads as sweep


@app.task(name="tasks.retention.abort_stale_uploads")
def abort_stale_uploads() -> dict[str, Any]:
    result = sweep(current_fleet())
    return {"aborted": result.aborted, "kept": len(result.kept)}
