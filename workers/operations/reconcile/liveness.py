"""Whether a job may still be running or about to run: its lock, its task, its age."""

from datetime import datetime, timedelta

from workers.catalog.models import PENDING
from workers.fleet import Fleet
from workers.operations.broker_tasks import BrokerTasks, tasks_in_broker
from workers.operations.locks import lock_holder
from workers.operations.reconcile.rows import Job, Outcome, outcome_of
from workers.timestamps import utcnow


def sort_jobs(
    fleet: Fleet, jobs: list[Job], pending_grace: float
) -> tuple[list[Outcome], list[Job]]:
    """(the rows left alone, with why; the rows whose task and lock are gone)."""
    broker = tasks_in_broker(fleet.settings.broker_url)
    young = utcnow() - timedelta(seconds=pending_grace)
    left, lost = [], []
    for job in jobs:
        why = _alive(fleet, job, broker, young)
        if why:
            left.append(outcome_of(job, "left", why))
        else:
            lost.append(job)
    return left, lost


def _alive(fleet: Fleet, job: Job, broker: BrokerTasks, young: datetime) -> str | None:
    """Why the job may still be running or about to run, or None if it is gone."""
    holder = lock_holder(fleet.settings, job.namespace)
    if holder is not None:
        return f"the namespace lock is held ({holder})"
    if job.kind == "backup" and broker.has_backup(job.task_id, job.namespace, job.timestamp):
        return "its task is in the broker (queued, or to be delivered again)"
    if job.kind == "restore" and broker.has_restore(job.task_id, job.row_id):
        return "its task is in the broker (queued, or to be delivered again)"
    if job.status == PENDING and job.created_at > young:
        return "requested too recently"
    return None
