"""Settling backups and restores whose worker was lost, so no namespace stays blocked.

A row stays `Pending` or `Running` for good when its task can never record an
end: the catalog was unreachable when the task wanted to write it (past
CATALOG_RETRY_SECONDS), the hard time limit killed it, or the broker lost its
message. One active row per namespace is the rule, so every later backup of
the namespace would answer 409. The reconciler (`tasks.maintenance.reconcile`
on RECONCILE_SCHEDULE, `backfleet reconcile`) settles such a row when both its
task and its lock are gone:

- lock: nothing holds the namespace lock (a running backup or restore holds
  it from before its row turns Running until after its end is written, and
  its heartbeat re-takes it within a third of BACKUP_LOCK_TTL if Redis lost it);
- task: its message is neither queued nor delivered-and-unacknowledged in the
  broker (workers/operations/broker_tasks.py). A worker killed mid-task leaves its message
  unacknowledged: Redis hands it back after CELERY_VISIBILITY_TIMEOUT and the
  redelivery resumes the job, so such a row is left to it. A failed or
  time-limited task is acknowledged, and only the reconciler can end its row.
  An age bound on the visibility timeout alone would be simpler, but would
  leave a namespace blocked for 12 hours at the defaults;
- a Pending row must also be older than PENDING_GRACE_SECONDS (the API writes
  the row, then sends the task).

The checks are made twice, a heartbeat interval apart (a message between the
queue and `unacked`, a lock being re-taken), and the row is settled only if
it did not change meanwhile (same status, same delivery count).

A backup is settled from the store, its source of truth: a manifest that is
there, complete (every artifact it lists stored with its size, agreeing
with the artifacts the catalog recorded) and authentic (a valid MAC from the
fleet's keys, or listing exactly the artifacts the catalog recorded as stored,
field for field) makes it `Success`, and the catalog's artifacts and manifest
digest are filled from it; otherwise it is `Failed`. Anyone with write access
to the bucket can put a manifest there: taken in unauthenticated, it would
become what a restore checks against (workers/repository/authenticity.py). A restore
cannot be proven from the store and is `Failed`: its target may hold a part
of the backup. Each settled row is a `BackupReconciled` or `RestoreReconciled`
audit event and alerted like any other end (workers/monitoring/notify.py).
"""

import time

from workers.fleet import Fleet
from workers.operations.reconcile.liveness import sort_jobs
from workers.operations.reconcile.rows import Job, Outcome, active_jobs
from workers.operations.reconcile.settle import plan, settle

__all__ = ["PENDING_GRACE_SECONDS", "Job", "Outcome", "reconcile"]

PENDING_GRACE_SECONDS = 120.0  # the API's write-the-row-then-send window, with room to spare


def reconcile(
    fleet: Fleet,
    *,
    dry_run: bool = False,
    pending_grace: float = PENDING_GRACE_SECONDS,
    confirm_after: float | None = None,
) -> list[Outcome]:
    """Settle every active row whose task and lock are gone; say why each other is left."""
    settings = fleet.settings
    jobs = active_jobs(settings.database_url)
    if not jobs:
        return []
    left, lost = sort_jobs(fleet, jobs, pending_grace)
    if lost and not dry_run:
        time.sleep(settings.backup_lock_ttl / 3 + 1 if confirm_after is None else confirm_after)
        now_active = {(j.kind, j.row_id): j for j in active_jobs(settings.database_url)}
        again = [job for job in lost if now_active.get((job.kind, job.row_id)) == job]
        more_left, lost = sort_jobs(fleet, again, pending_grace)
        left += more_left
    outcomes = list(left)
    for job in lost:
        outcome = plan(fleet, job)
        if not dry_run:
            outcome = settle(fleet, job, outcome)
        outcomes.append(outcome)
    return outcomes
