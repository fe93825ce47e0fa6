"""What the fleet alerts about: staleness, failed backups and hooks, finished restores.

Each function never raises: an alert must not break the work it reports on.
"""

import logging
from functools import partial

from workers.catalog.models import FAILED, SUCCESS
from workers.fleet import Fleet
from workers.monitoring.alerts import AlertEvent, alerter_for, safely
from workers.monitoring.health import Freshness, freshness

log = logging.getLogger(__name__)


def check_staleness(fleet: Fleet) -> list[Freshness]:
    """Open an alert for each stale namespace or service, close the fresh ones, resend the rest."""
    alerter = alerter_for(fleet)
    found = freshness(fleet)
    hours = fleet.settings.max_age_seconds / 3600
    for item in found:
        if not item.stale:
            safely(partial(alerter.resolve, item.condition), item.condition)
            continue
        what = f"namespace {item.namespace}"
        if item.service:
            what = f"service {item.service} of {what}"
        since = (
            f"its latest successful backup is {item.last_success}, {item.age / 3600:.1f} h old"
            if item.age is not None
            else "it has no successful backup"
        )
        alert = AlertEvent(
            event="backup.stale",
            text=f"Backfleet: {what} is stale: {since} (BACKUP_MAX_AGE is {hours:g} h)",
            namespace=item.namespace,
            service=item.service,
            timestamp=item.last_success,
        )
        safely(partial(alerter.open, item.condition, alert), item.condition)
    safely(alerter.redeliver, "redelivery")
    return found


def report_backup_outcome(
    fleet: Fleet, namespace: str, timestamp: str, status: str, error: str | None
) -> None:
    """`backup.failed` once per failed backup (a redelivered task does not repeat it)."""
    if status != FAILED:
        return
    alert = AlertEvent(
        event="backup.failed",
        text=f"Backfleet: backup {namespace}/{timestamp} FAILED: {error or 'no reason recorded'}",
        namespace=namespace,
        timestamp=timestamp,
    )
    condition = f"backup.failed:{namespace}:{timestamp}"
    safely(lambda: alerter_for(fleet).once(condition, alert), condition)


def report_hook_failure(
    fleet: Fleet, namespace: str, timestamp: str, service: str, summary: str
) -> None:
    """`backup.hook_failed`, once per service of a backup: a `post` hook failed (the
    backup keeps its artifact; what the hook should have put back may still be off)."""
    alert = AlertEvent(
        event="backup.hook_failed",
        text=f"Backfleet: backup {namespace}/{timestamp}, service {service}: {summary}",
        namespace=namespace,
        service=service,
        timestamp=timestamp,
    )
    condition = f"backup.hook_failed:{namespace}:{timestamp}:{service}"
    safely(lambda: alerter_for(fleet).once(condition, alert), condition)


def report_restore_outcome(
    fleet: Fleet,
    *,
    restore_id: int,
    namespace: str,
    source_namespace: str,
    timestamp: str,
    status: str,
    error: str | None,
) -> None:
    """`restore.succeeded` or `restore.failed`, once per restore."""
    if status not in (SUCCESS, FAILED):
        return
    event = "restore.succeeded" if status == SUCCESS else "restore.failed"
    into = f" into namespace {namespace}" if namespace != source_namespace else ""
    text = f"Backfleet: restore of backup {source_namespace}/{timestamp}{into} " + (
        "succeeded" if status == SUCCESS else f"FAILED: {error or 'no reason recorded'}"
    )
    alert = AlertEvent(event=event, text=text, namespace=namespace, timestamp=timestamp)
    condition = f"{event}:{restore_id}"
    safely(lambda: alerter_for(fleet).once(condition, alert), condition)
