"""A backup's verdict, told: an audit event, and an alert that opens on failure and
resolves on success. Verification and the test restore both report through it."""

from collections.abc import Sequence
from typing import Protocol

from workers.audit.user_events import record_system_event
from workers.fleet import Fleet
from workers.monitoring.alerts import AlertEvent, alerter_for, safely


class Failure(Protocol):
    """A failed check of one copy of the backup (a VerifyResult, a RestoreTestResult)."""

    @property
    def store(self) -> str: ...

    @property
    def error(self) -> str | None: ...


def report_verdict(
    fleet: Fleet,
    *,
    namespace: str,
    timestamp: str,
    failed: Sequence[Failure],
    what: str = "verification",
    condition_suffix: str = "",
) -> None:
    """Audit event, and an alert that opens on failure and resolves on success."""
    condition = f"verify.failed:{namespace}:{timestamp}{condition_suffix}"
    alerter = alerter_for(fleet)
    if failed:
        reason = "; ".join(f"{result.store}: {result.error}" for result in failed)
        record_system_event(
            namespace=namespace,
            name="BackupVerifyFailed",
            params={
                "namespace": namespace,
                "timestamp": timestamp,
                "check": what,
                "reason": reason[:1000],
            },
            response_code=500,
        )
        alert = AlertEvent(
            event="verify.failed",
            text=f"Backfleet: {what} of backup {namespace}/{timestamp} FAILED: {reason}",
            namespace=namespace,
            timestamp=timestamp,
        )
        safely(lambda: alerter.open(condition, alert), condition)
    else:
        record_system_event(
            namespace=namespace,
            name="BackupVerified",
            params={"namespace": namespace, "timestamp": timestamp, "check": what},
        )
        safely(lambda: alerter.resolve(condition), condition)
