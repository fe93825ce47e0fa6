"""The drill alerts, each per service, opened once and resolved when it no longer holds:

- `drill.failed`: the latest drill of one of the service's retained backups failed (a
  tool's error, counts that differ from the manifest's); resolved once a later drill of
  each such backup passes (or retention deleted it).
- `drill.rto_missed`: the service's last drill succeeded but took longer than its RTO;
  resolved by a later drill within it.
- `drill.overdue`: no drill within its `test_restore` cadence plus the grace
  (monitoring/recovery.py); resolved by the next drill.

Judged from the catalog (recovery_report) after every test-restore run and by the
staleness check (STALENESS_CHECK_SCHEDULE), which is what notices an overdue drill.
Never raises: an alert must not break the work it reports on.
"""

import logging
from datetime import datetime

from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent, alerter_for, safely
from workers.monitoring.health import span
from workers.monitoring.recovery import ServiceRecovery, recovery_report

log = logging.getLogger(__name__)
EVENTS = ("drill.failed", "drill.rto_missed", "drill.overdue")


def check_drills(
    fleet: Fleet, *, namespaces: list[str] | None = None, now: datetime | None = None
) -> list[ServiceRecovery]:
    """Open or resolve each service's drill alerts; returns the report they were judged on."""
    try:
        report = recovery_report(fleet, namespaces=namespaces, now=now)
    except Exception:
        log.exception("could not judge the drills")
        return []
    alerter = alerter_for(fleet)
    for item in report:
        verdicts = {
            "drill.failed": _failed_text(item) if item.failing else None,
            "drill.rto_missed": _missed_text(item) if item.missed_rto else None,
            "drill.overdue": _overdue_text(item) if item.overdue else None,
        }
        for event, text in verdicts.items():
            _toggle(alerter, item, event, text)
    return report


def _toggle(alerter: Alerter, item: ServiceRecovery, event: str, text: str | None) -> None:
    condition = f"{event}:{item.namespace}:{item.service}"
    if text is None:
        safely(lambda: alerter.resolve(condition), condition)
        return
    if event == "drill.failed":
        stamp: str | None = item.failing[0]
    else:
        stamp = item.last_drill.timestamp if item.last_drill else None
    alert = AlertEvent(
        event=event, text=text, namespace=item.namespace, service=item.service, timestamp=stamp
    )
    safely(lambda: alerter.open(condition, alert), condition)


def _name(item: ServiceRecovery) -> str:
    return f"service {item.service} of namespace {item.namespace}"


def seconds_text(seconds: float) -> str:
    """`0.42 s`, `4.2 s`, `12 min`, `1 h 30 min`: a drill's duration for people."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s" if seconds < 120 else span(seconds)


def _failed_text(item: ServiceRecovery) -> str:
    drill = item.last_drill
    if drill is not None and drill.status == "Failed":
        return (
            f"Backfleet: the drill of {_name(item)} FAILED (backup {drill.timestamp}, "
            f"after {seconds_text(drill.seconds)}): {drill.error or 'no reason recorded'}"
        )
    backups = ", ".join(item.failing)
    return (
        f"Backfleet: the latest drill of {_name(item)} from backup {backups} FAILED "
        "(`backfleet report` and the test-restore log say why)"
    )


def _missed_text(item: ServiceRecovery) -> str:
    drill = item.last_drill
    assert drill is not None
    return (
        f"Backfleet: the drill of {_name(item)} took {seconds_text(drill.seconds)}, over its "
        f"RTO of {span(drill.rto_seconds)} (backup {drill.timestamp})"
    )


def _overdue_text(item: ServiceRecovery) -> str:
    every = f"its test_restore cadence is {span(item.every)}"
    due = f"{item.due_by:%Y-%m-%d %H:%M} UTC" if item.due_by else "?"
    drill = item.last_drill
    if drill is None:
        return f"Backfleet: {_name(item)} has never been drilled; one was due by {due} ({every})"
    return (
        f"Backfleet: {_name(item)} has not been drilled since "
        f"{drill.finished_at:%Y-%m-%d %H:%M} UTC; one was due by {due} ({every})"
    )
