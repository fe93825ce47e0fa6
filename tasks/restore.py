"""tasks.restore.run_restore: restore the services a Pending restore row names."""

from typing import Any

from workers.app import app
from workers.fleet import current_fleet
from workers.restore_run import run_restore as perform_restore


@app.task(name="tasks.restore.run_restore")
def run_restore(
    restore_id: int,
    namespace: str | None = None,
    source_namespace: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The restore row says everything; namespace and timestamp only label the task in Flower."""
    return {
        "restore_id": restore_id,
        "status": perform_restore(current_fleet(), restore_id=restore_id),
    }
