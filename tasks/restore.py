"""tasks.restore.run_restore: restore the services a Pending restore row names."""

from typing import Any

from workers.app import app
from workers.fleet import current_fleet
from workers.restore_run import run_restore as perform_restore


@app.task(name="tasks.restore.run_restore")
def run_restore(restore_id: int) -> dict[str, Any]:
    return {
        "restore_id": restore_id,
        "status": perform_restore(current_fleet(), restore_id=restore_id),
    }
