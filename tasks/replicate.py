"""tasks.replicate.copy_to_secondary (queue `maintenance`): the secondary store's copy sweep."""

from typing import Any

from tasks.app import app
from workers.fleet import current_fleet
from workers.operations.replicate import copy_pending
from workers.queues import COPY_TO_SECONDARY


@app.task(name=COPY_TO_SECONDARY)
def copy_to_secondary() -> dict[str, Any]:
    report = copy_pending(current_fleet())
    return {"copied": report.copied, "failed": report.failed}
