"""The alerts a person looks at (`backfleet alerts`): the open ones, and those resolved
lately, each with where its messages went."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.catalog import alerts as alert_rows
from workers.catalog.alerts import DELIVERED, EXPIRED, NO_WEBHOOK, OWED, SKIPPED
from workers.catalog.db import session_scope
from workers.catalog.models import Alert
from workers.monitoring.alert_messages import is_one_off

_SAID = {
    NO_WEBHOOK: "not delivered: no webhook configured",
    OWED: "pending",
    DELIVERED: "delivered",
    SKIPPED: "not delivered: resolved first",
    EXPIRED: "not delivered: gave up after a day",
}


def delivery_text(state: str | None, attempts: int = 0) -> str:
    """A message's delivery state for people: `delivered`, `pending (2 tries)`…"""
    if state is None:
        return "-"
    said = _SAID.get(state, state)
    return f"{said} ({attempts} tries)" if state == OWED and attempts else said


@dataclass(frozen=True)
class ListedAlert:
    id: int
    event: str
    condition: str
    namespace: str | None
    service: str | None
    timestamp: str | None
    message: str  # as stored: redacted
    opened_at: datetime
    resolved_at: datetime | None
    one_off: bool  # an event (backup.failed…) rather than a condition that resolves
    delivery: str  # the opening message's state (catalog/alerts.py)
    attempts: int
    resolve_delivery: str | None  # the resolution's; None: none is sent
    resolve_attempts: int

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    def delivery_summary(self) -> str:
        """Where the messages went, e.g. `delivered; resolution pending (1 tries)`."""
        opening = delivery_text(self.delivery, self.attempts)
        if self.resolve_delivery is None or self.resolve_delivery == self.delivery == NO_WEBHOOK:
            return opening
        resolution = delivery_text(self.resolve_delivery, self.resolve_attempts)
        return f"{opening}; resolution {resolution}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "condition": self.condition,
            "namespace": self.namespace,
            "service": self.service,
            "timestamp": self.timestamp,
            "status": "event" if self.one_off else ("open" if self.open else "resolved"),
            "openedAt": self.opened_at.isoformat(),
            "resolvedAt": self.resolved_at.isoformat() if self.resolved_at else None,
            "delivery": self.delivery,
            "attempts": self.attempts,
            "resolveDelivery": self.resolve_delivery,
            "resolveAttempts": self.resolve_attempts,
            "message": self.message,
        }


def list_alerts(
    database_url: str, *, namespace: str | None = None, resolved_since: datetime | None = None
) -> list[ListedAlert]:
    """Open alerts (of one namespace, or all), and with `resolved_since` those resolved
    since then (one-off events included), newest first."""
    with session_scope(database_url) as session:
        rows = alert_rows.listed_alerts(session, namespace=namespace, resolved_since=resolved_since)
        return [_listed(row) for row in rows]


def _listed(row: Alert) -> ListedAlert:
    return ListedAlert(
        id=row.id,
        event=row.event,
        condition=row.condition,
        namespace=row.namespace,
        service=row.service,
        timestamp=row.timestamp,
        message=row.text,
        opened_at=row.opened_at,
        resolved_at=row.resolved_at,
        one_off=is_one_off(row),
        delivery=row.delivery,
        attempts=row.attempts,
        resolve_delivery=row.resolve_delivery,
        resolve_attempts=row.resolve_attempts,
    )
