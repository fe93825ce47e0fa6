"""tasks.restore.run_restore: restore the services a Pending restore row names."""

from typing import Any

from workers.app import app
from workers.audit.operations import restore_ended
from workers.fleet import current_fleet
from workers.restore_run import run_restore as perform_restore


@app.task(name="tasks.restore.run_restore")
def run_restore(restore_id: int) -> dict[str, Any]:
    fleet = current_fleet()
    status = perform_restore(fleet, restore_id=restore_id)
    restore_ended(fleet.settings.database_url, restore_id=restore_id)
    return {"restore_id": restore_id, "status": status}
