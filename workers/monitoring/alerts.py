"""Alerts: a Slack-compatible webhook, sent once per open condition, retried with backoff.

A condition (`backup.stale:app`, `verify.failed:app:2023-02-02t16-00-00`…) is
recorded in the catalog when it opens; while it stays open it is not sent
again, and once resolved it may open (and be sent) anew. One-off events
(`restore.succeeded:42`) are recorded already resolved, so a redelivered task
does not send them twice. A webhook that cannot be reached is retried with
exponential backoff; what is still undelivered is retried by the next
staleness check. Texts are redacted before they are stored or sent, and the
webhook URL (a secret: Slack's carries a token) is never logged.

In a worker the sending is handed to a task of its own
(`tasks.alerts.deliver_alert`, queue `maintenance`), so a dead webhook never
holds the backup, restore or check that raised the alert (nor its namespace
lock); elsewhere (the CLI, tests) it is sent inline.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from workers.catalog import alerts as alert_rows
from workers.catalog.db import session_scope
from workers.catalog.models import Alert
from workers.redact import redact
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.timestamps import utcnow

log = logging.getLogger(__name__)

# Undelivered alerts older than this are given up (the condition is still in the catalog).
REDELIVERY_WINDOW = timedelta(days=1)

Post = Callable[[str, dict[str, Any], float], int]  # url, payload, timeout -> HTTP status
Dispatch = Callable[[int], None]  # hands the delivery of a recorded alert (its id) elsewhere

_dispatch: Dispatch | None = None


def deliver_in_background(dispatch: Dispatch | None) -> None:
    """From now on alerts of this process are delivered by `dispatch` (a worker's task)."""
    global _dispatch
    _dispatch = dispatch


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


class Alerter:
    """Opens, resolves and delivers alerts for one fleet's settings."""

    def __init__(
        self,
        settings: Settings,
        secrets: Iterable[str] = (),
        *,
        post: Post = http_post,
        sleep: Callable[[float], None] = time.sleep,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.settings, self.secrets = settings, list(secrets)
        self.post, self.sleep, self.dispatch = post, sleep, dispatch
        self.url = settings.database_url
        self.policy = RetryPolicy(
            attempts=settings.alert_webhook_attempts, base_delay=1.0, max_delay=30.0
        )

    def open(self, condition: str, alert: AlertEvent) -> bool:
        """Record the condition and send it; False (and nothing sent) if it is already open."""
        alert = self._clean(alert)
        with session_scope(self.url) as session:
            row = _row(condition, alert)
            if not alert_rows.insert_unless_open(session, row=row):
                return False  # the same condition is open: it was alerted already
            alert_id = row.id
        self._send(alert_id, alert)
        return True

    def once(self, condition: str, alert: AlertEvent) -> bool:
        """A one-off event: sent once, whatever happens to the task that reports it."""
        alert = self._clean(alert)
        with session_scope(self.url) as session:
            if alert_rows.condition_seen(session, condition=condition):
                return False
            row = _row(condition, alert)
            row.resolved_at = row.opened_at = utcnow()
            session.add(row)
            session.flush()
            alert_id = row.id
        self._send(alert_id, alert)
        return True

    def resolve(self, condition: str) -> bool:
        """Close the condition (it may be alerted again once it reopens)."""
        with session_scope(self.url) as session:
            rows = alert_rows.open_alerts(session, condition=condition)
            for row in rows:
                row.resolved_at = utcnow()
            return bool(rows)

    def open_conditions(self, prefix: str) -> list[str]:
        with session_scope(self.url) as session:
            return alert_rows.open_conditions(session, prefix=prefix)

    def redeliver(self) -> int:
        """Send what earlier attempts could not; returns how many went out (or were queued).

        An alert is owed once its own tries are spent, or once they have had time
        to be (its delivery task may have been lost with a worker).
        """
        now = utcnow()
        settled = now - timedelta(seconds=self._tries_take())
        with session_scope(self.url) as session:
            rows = alert_rows.owed_alerts(
                session,
                opened_after=now - REDELIVERY_WINDOW,
                settled_before=settled,
                attempts=self.policy.attempts,
            )
            pending = [(row.id, _event_of(row)) for row in rows]
        return sum(self._send(alert_id, alert) for alert_id, alert in pending)

    def deliver_once(self, alert_id: int) -> bool:
        """One try at sending a recorded alert (a delivery task's); True once it is delivered."""
        with session_scope(self.url) as session:
            row = session.get(Alert, alert_id)
            if row is None or row.delivered_at is not None:
                return True  # gone, or already sent by another try
            alert = _event_of(row)
        return self._deliver(alert_id, alert, attempts=1)

    def _tries_take(self) -> float:
        """About how long one alert's tries may take, timeouts and pauses included."""
        attempts = self.policy.attempts
        return attempts * (self.settings.alert_webhook_timeout + self.policy.max_delay) + 60

    def _send(self, alert_id: int, alert: AlertEvent) -> bool:
        """Deliver now, or hand it to the dispatcher; True if sent or queued."""
        if self.dispatch is not None:
            try:
                self.dispatch(alert_id)
                return True
            except Exception as exc:  # the broker is down: send it here instead
                # Only the type: a broker error may quote its URL and password.
                log.warning(
                    "could not queue alert %s (%s); sending it now", alert.event, type(exc).__name__
                )
        return self._deliver(alert_id, alert)

    def _clean(self, alert: AlertEvent) -> AlertEvent:
        return AlertEvent(
            event=alert.event,
            text=redact(alert.text, self.secrets),
            namespace=alert.namespace,
            service=alert.service,
            timestamp=alert.timestamp,
        )

    def _deliver(self, alert_id: int, alert: AlertEvent, attempts: int | None = None) -> bool:
        webhook = self.settings.alert_webhook_url
        if webhook is None:
            log.warning("alert %s: %s (no ALERT_WEBHOOK_URL set)", alert.event, alert.text)
            return False
        delivered, tries = False, 0
        attempts = attempts or self.policy.attempts
        for attempt in range(1, attempts + 1):
            tries = attempt
            try:
                code = self.post(
                    webhook.get_secret_value(),
                    alert.payload(),
                    self.settings.alert_webhook_timeout,
                )
                reason = f"answered {code}"
                delivered = 200 <= code < 300
            except WebhookUnreachable as exc:
                reason = str(exc)
            if delivered:
                break
            log.warning(
                "alert webhook (ALERT_WEBHOOK_URL) %s for %s (attempt %d of %d)",
                reason,
                alert.event,
                attempt,
                attempts,
            )
            if attempt < attempts:
                self.sleep(self.policy.delay(attempt))
        with session_scope(self.url) as session:
            row = session.get(Alert, alert_id)
            if row is not None:
                row.attempts += tries
                if delivered:
                    row.delivered_at = utcnow()
        return delivered


def _row(condition: str, alert: AlertEvent) -> Alert:
    return Alert(
        condition=condition,
        event=alert.event,
        namespace=alert.namespace,
        service=alert.service,
        timestamp=alert.timestamp,
        text=alert.text,
        attempts=0,
    )


def _event_of(row: Alert) -> AlertEvent:
    return AlertEvent(
        event=row.event,
        text=row.text,
        namespace=row.namespace,
        service=row.service,
        timestamp=row.timestamp,
    )


def alerter_for(fleet: Any) -> Alerter:
    """The alerter of a Fleet (settings and its secrets); in a worker it queues deliveries."""
    return Alerter(fleet.settings, fleet.secrets(), dispatch=_dispatch)


def safely(action: Callable[[], object], what: str) -> None:
    """Run an alerting step; an alert must never break the work it reports on."""
    try:
        action()
    except Exception:
        log.exception("could not record the alert for %s", what)
