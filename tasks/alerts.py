"""tasks.alerts.check_staleness (queue `maintenance`): the RPO check, and alert redelivery."""

from typing import Any

from workers.app import app
from workers.fleet import current_fleet
from workers.notify import check_staleness as perform_check


@app.task(name="tasks.alerts.check_staleness")
def check_staleness() -> dict[str, Any]:
    found = perform_check(current_fleet())
    return {"stale": [f.condition.removeprefix("backup.stale:") for f in found if f.stale]}
