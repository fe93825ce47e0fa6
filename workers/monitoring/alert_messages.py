"""What an alert says: its event, the two messages a condition sends (when it opens, when it
resolves), and the HTTP post that carries them to the webhook.

The payload is Slack-compatible: `text` for people, then `event`, `status` (`open` or
`resolved`; absent on a one-off event such as `backup.failed`), and `namespace`,
`service`, `timestamp` where they apply.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.catalog.models import Alert
from workers.monitoring.health import span

OPENED, RESOLVED = "opened", "resolved"  # the two messages of an alert

Post = Callable[[str, dict[str, Any], float], int]  # url, payload, timeout -> HTTP status


@dataclass(frozen=True)
class AlertEvent:
    event: str  # backup.failed, verify.failed, backup.stale, restore.succeeded…
    text: str  # for people
    namespace: str | None = None
    service: str | None = None
    timestamp: str | None = None

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"text": self.text, "event": self.event}
        for name in ("namespace", "timestamp", "service"):
            if (value := getattr(self, name)) is not None:
                body[name] = value
        return body


def event_of(row: Alert) -> AlertEvent:
    return AlertEvent(
        event=row.event,
        text=row.text,
        namespace=row.namespace,
        service=row.service,
        timestamp=row.timestamp,
    )


def is_one_off(row: Alert) -> bool:
    """A one-off event (recorded resolved as it opened): one message, no resolution."""
    return row.resolved_at is not None and row.resolve_delivery is None


def payload_of(row: Alert, message: str) -> dict[str, Any]:
    """The JSON the webhook gets for the row's opening or resolution message."""
    body = event_of(row).payload()
    if message == RESOLVED:
        body["text"] = resolution_text(row)
        body["status"] = "resolved"
    elif not is_one_off(row):
        body["status"] = "open"
    return body


def where_of(row: Alert) -> str:
    if row.service and row.namespace:
        return f"service {row.service} of namespace {row.namespace}"
    return f"namespace {row.namespace}" if row.namespace else "the fleet"


def resolution_text(row: Alert) -> str:
    """`Backfleet: RESOLVED: backup.stale for service db of namespace app, open 2 h 5 min
    since 2026-03-02 13:01 UTC (it said: …)`."""
    assert row.resolved_at is not None
    said = row.text.removeprefix("Backfleet: ")
    seconds = (row.resolved_at - row.opened_at).total_seconds()
    took = span(seconds) if seconds >= 60 else f"{seconds:.0f} s"
    return (
        f"Backfleet: RESOLVED: {row.event} for {where_of(row)}, open {took} since "
        f"{row.opened_at:%Y-%m-%d %H:%M} UTC (it said: {said})"
    )


class WebhookUnreachable(Exception):
    """No answer from the webhook; the message names the error's type, never the URL."""


def http_post(url: str, payload: dict[str, Any], timeout: float) -> int:
    # Imported here: httpx2 takes ~80 ms and ~14 MiB to import (anyio, ssl, its
    # package metadata), which every worker, beat and CLI process would pay.
    import httpx2

    # httpx2 logs each request's URL at INFO, and a webhook URL carries its token.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        return httpx2.post(url, json=payload, timeout=timeout).status_code
    except httpx2.HTTPError as exc:
        raise WebhookUnreachable(type(exc).__name__) from None  # str(exc) would carry the URL
