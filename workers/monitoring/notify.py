"""What the fleet alerts about: staleness, storage budgets, failed backups and hooks,
finished restores.

Each function never raises: an alert must not break the work it reports on.
"""

import logging
from datetime import datetime
from functools import partial

from workers.catalog.models import FAILED, SUCCESS
from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent, alerter_for, safely
from workers.monitoring.health import Freshness, freshness, span
from workers.monitoring.sizes import format_bytes
from workers.monitoring.storage import NamespaceStorage, storage_report

log = logging.getLogger(__name__)


def check_staleness(fleet: Fleet, *, now: datetime | None = None) -> list[Freshness]:
    """Open an alert for each stale service, close the fresh ones, resend the rest.

    Each service is judged against its own max_age (monitoring/health.py). A
    namespace is stale when one of its services is, and that service's alert says
    so (with the namespace): the namespace gets no alert of its own, and one an
    earlier version opened is closed. So are the alerts of services and namespaces
    no longer in the services file: nothing would ever judge them fresh again.
    """
    alerter = alerter_for(fleet)
    found = freshness(fleet, now=now)
    for item in found:
        if not item.stale or item.service is None:
            safely(partial(alerter.resolve, item.condition), item.condition)
            continue
        limit = f"its max_age is {span(item.max_age or 0)}"
        if item.age is not None:
            since = (
                f"its latest successful backup is {item.last_success}, "
                f"{item.age / 3600:.1f} h old ({limit})"
            )
        else:
            due = f" by {item.due_by:%Y-%m-%d %H:%M} UTC" if item.due_by else ""
            since = f"it has no successful backup, and one was due{due} ({limit})"
        alert = AlertEvent(
            event="backup.stale",
            text=f"Backfleet: service {item.service} of namespace {item.namespace} is stale: "
            f"{since}",
            namespace=item.namespace,
            service=item.service,
            timestamp=item.last_success,
        )
        safely(partial(alerter.open, item.condition, alert), item.condition)
    safely(partial(_resolve_unconfigured, alerter, {item.condition for item in found}), STALE)
    safely(alerter.redeliver, "redelivery")
    return found


STALE = "backup.stale:"


def _resolve_unconfigured(alerter: Alerter, judged: set[str]) -> None:
    """Close every open staleness alert that no configured service or namespace accounts for."""
    for condition in alerter.open_conditions(STALE):
        if condition in judged:
            continue
        namespace, _, service = condition.removeprefix(STALE).partition(":")
        gone = (
            f"service {service} of namespace {namespace}" if service else f"namespace {namespace}"
        )
        log.info("closing alert %s: %s is no longer in the services file", condition, gone)
        safely(partial(alerter.resolve, condition), condition)


OVER_BUDGET = "storage.over_budget"


def check_storage_budgets(fleet: Fleet) -> list[NamespaceStorage]:
    """`storage.over_budget` for each namespace whose stored bytes exceed its budget,
    closed once they no longer do (retention deleted enough, or the budget was raised or
    removed). Runs with the staleness check; never raises."""
    try:
        report = storage_report(fleet)
    except Exception:
        log.exception("could not measure the stored bytes for the storage budgets")
        return []
    alerter = alerter_for(fleet)
    for item in report:
        condition = f"{OVER_BUDGET}:{item.namespace}"
        if not item.over_budget:
            safely(partial(alerter.resolve, condition), condition)
            continue
        alert = AlertEvent(
            event=OVER_BUDGET,
            text=f"Backfleet: namespace {item.namespace} {_over_budget(item)}",
            namespace=item.namespace,
        )
        safely(partial(alerter.open, condition, alert), condition)
    measured = {f"{OVER_BUDGET}:{item.namespace}" for item in report}

    def close_unmeasured() -> None:  # a namespace gone from the catalog and the services file
        for condition in alerter.open_conditions(f"{OVER_BUDGET}:"):
            if condition not in measured:
                alerter.resolve(condition)

    safely(close_unmeasured, OVER_BUDGET)
    return report


def _over_budget(item: NamespaceStorage) -> str:
    """`stores 612.0 GiB in 1200 objects, over its budget of 500.0 GiB (122 %, …)`."""
    assert item.budget is not None
    used = item.budget_used or 0.0
    text = (
        f"stores {format_bytes(item.size)} in {item.objects} objects, over its storage "
        f"budget of {format_bytes(item.budget)} ({used:.0%}, {item.budget_from})"
    )
    if item.monthly_cost is not None:
        text += f"; about {item.monthly_cost:.2f} a month at STORAGE_PRICES"
    return text


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
