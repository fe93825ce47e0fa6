"""tasks.maintenance.reconcile (queue `maintenance`): settle rows whose worker was lost."""

from typing import Any

from tasks.app import app
from workers.fleet import current_fleet
from workers.operations.reconcile import reconcile as perform_reconcile
from workers.queues import RECONCILE


@app.task(name=RECONCILE)
def reconcile(dry_run: bool = False) -> dict[str, Any]:
    outcomes = perform_reconcile(current_fleet(), dry_run=dry_run)
    return {
        "settled": [o.as_dict() for o in outcomes if o.status != "left"],
        "left": [o.as_dict() for o in outcomes if o.status == "left"],
    }
