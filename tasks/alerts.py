"""Tasks of queue `maintenance` about alerts.

- tasks.alerts.check_staleness: the RPO check, the storage budgets, the drills' (overdue,
  failed, over their RTO: monitoring/drill_alerts.py), the WAL streaming's (lag, retained,
  a gap a backup closed: monitoring/wal.py), and alert redelivery.
- tasks.alerts.deliver_alert: sends one message of a recorded alert (its opening, or
  with message="resolved" its resolution) to the webhook, one try per run, retried by
  Celery with the alerter's backoff; what is still undelivered after
  ALERT_WEBHOOK_ATTEMPTS tries is owed to the next check. Only queued when
  ALERT_WEBHOOK_URL is set.
"""

from typing import Any

from celery import Task
from celery.signals import worker_init

from tasks.app import app
from workers.fleet import current_fleet
from workers.monitoring.alerts import OPENED, alerter_for, deliver_in_background
from workers.monitoring.drill_alerts import check_drills
from workers.monitoring.notify import check_staleness as perform_check
from workers.monitoring.notify import check_storage_budgets
from workers.monitoring.wal import check_wal
from workers.queues import CHECK_STALENESS, DELIVER_ALERT


@app.task(name=CHECK_STALENESS)
def check_staleness() -> dict[str, Any]:
    fleet = current_fleet()
    budgets = check_storage_budgets(fleet)
    drills = check_drills(fleet)  # first, so the redelivery below includes their alerts
    streams = check_wal(fleet)  # a dead streamer's lag grows: noticed here
    found = perform_check(fleet)
    return {
        "stale": [f.condition.removeprefix("backup.stale:") for f in found if f.stale],
        "overBudget": [item.namespace for item in budgets if item.over_budget],
        "drills_overdue": [f"{d.namespace}/{d.service}" for d in drills if d.overdue],
        "walLagging": [
            f"{s.namespace}/{s.service}"
            for s in streams
            if s.lag_seconds is not None and s.lag_seconds > fleet.settings.wal_rpo_seconds
        ],
    }


@app.task(name=DELIVER_ALERT, bind=True, max_retries=None)
def deliver_alert(self: Task, alert_id: int, message: str = OPENED) -> dict[str, Any]:
    fleet = current_fleet()
    alerter = alerter_for(fleet)
    if alerter.deliver_once(alert_id, message):
        return {"alert": alert_id, "message": message, "delivered": True}
    tries = self.request.retries + 1
    if tries < fleet.settings.alert_webhook_attempts:
        raise self.retry(countdown=alerter.policy.delay(tries))
    return {"alert": alert_id, "message": message, "delivered": False}


def queue_delivery(alert_id: int, message: str) -> None:
    """The worker's alert dispatcher: deliver_alert on the maintenance queue."""
    # Publishing retries briefly (task_publish_retry_policy). An opening goes as before
    # (one argument), so a worker not yet upgraded still takes it.
    args = (alert_id,) if message == OPENED else (alert_id, message)
    deliver_alert.delay(*args)


@worker_init.connect  # connected when the worker imports this module, before it sends worker_init
def _alerts_go_through_their_own_task(**_: object) -> None:
    """A dead webhook must not hold the task that raised the alert (monitoring/alerts.py)."""
    deliver_in_background(queue_delivery)
