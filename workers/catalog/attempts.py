"""Counting deliveries of a backup or restore, so a job whose worker keeps dying ends.

With late acknowledgement a task whose worker is lost is delivered again, and a
job that kills its worker every time (out of memory, say) would loop forever.
Each delivery that starts work is counted on the catalog row; past the cap the
job is failed with the reason instead of being run again.
"""

from workers.catalog.models import FAILED, RUNNING, Backup, Restore
from workers.timestamps import utcnow


class StopJob(Exception):
    """The job must end now without recording a result (its lock went to another holder)."""


def start_attempt(row: Backup | Restore, *, max_redeliveries: int) -> bool:
    """Mark the row Running for one more attempt; False (and Failed) past the cap."""
    row.attempts = (row.attempts or 0) + 1
    if row.attempts > 1 + max_redeliveries:
        row.status, row.finished_at = FAILED, utcnow()
        row.error = (
            f"given up after {row.attempts - 1} deliveries: the worker running it was lost "
            f"each time (TASK_MAX_REDELIVERIES={max_redeliveries})"
        )
        return False
    row.status, row.started_at = RUNNING, row.started_at or utcnow()
    return True
