"""Alerts: a Slack-compatible webhook told once when a condition opens and once when it
resolves, retried with backoff; without a webhook, recorded and logged only.

A condition (`backup.stale:app:db`, `verify.failed:app:2023-02-02t16-00-00`…) is
recorded in the catalog when it opens, and logged once (WARNING); while it stays open
it is neither sent nor logged again, and once resolved (logged once, INFO) it may open
(and be sent) anew. One-off events (`restore.succeeded:42`) are recorded already
resolved, so a redelivered task does not send them twice; they have no resolution.

Each message (opening, resolution) has a delivery state in its row (catalog/alerts.py):
`none` without ALERT_WEBHOOK_URL (nothing is queued, retried or re-sent), else `pending`
until the webhook takes it (`delivered`). A webhook that cannot be reached is retried
with exponential backoff; what is still undelivered is retried by the next staleness
check, for a day (then `expired`). An opening not delivered before its condition
resolves is `skipped`: the resolution, which repeats what it said, is sent instead. A
delivered message is never sent again. Texts are redacted before they are stored or
sent, and the webhook URL (a secret: Slack's carries a token) is never logged.

In a worker the sending is handed to a task of its own
(`tasks.alerts.deliver_alert`, queue `maintenance`), so a dead webhook never
holds the backup, restore or check that raised the alert (nor its namespace lock);
elsewhere (the CLI, tests) it is sent inline.
"""

import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from workers.catalog import alerts as alert_rows
from workers.catalog.alerts import DELIVERED, NO_WEBHOOK, OWED, SKIPPED
from workers.catalog.db import session_scope
from workers.catalog.models import Alert
from workers.monitoring.alert_messages import (
    OPENED,
    RESOLVED,
    AlertEvent,
    Post,
    WebhookUnreachable,
    http_post,
    payload_of,
    resolution_text,
)
from workers.redact import redact
from workers.retry import RetryPolicy
from workers.settings import Settings
from workers.timestamps import utcnow

__all__ = ["OPENED", "RESOLVED", "AlertEvent", "Alerter", "alerter_for", "safely"]

log = logging.getLogger(__name__)

# Undelivered messages older than this are given up (the condition is still in the catalog).
REDELIVERY_WINDOW = timedelta(days=1)

# Hands the delivery of a recorded alert's message (its id, OPENED or RESOLVED) elsewhere.
Dispatch = Callable[[int, str], None]

_dispatch: Dispatch | None = None


def deliver_in_background(dispatch: Dispatch | None) -> None:
    """From now on alerts of this process are delivered by `dispatch` (a worker's task)."""
    global _dispatch
    _dispatch = dispatch


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
        self.webhook = settings.alert_webhook_url
        self.policy = RetryPolicy(
            attempts=settings.alert_webhook_attempts, base_delay=1.0, max_delay=30.0
        )

    def open(self, condition: str, alert: AlertEvent) -> bool:
        """Record the condition, log it and send it; False (nothing logged at WARNING, nothing
        sent) if it is already open."""
        alert = self._clean(alert)
        with session_scope(self.url) as session:
            row = self._row(condition, alert)
            if not alert_rows.insert_unless_open(session, row=row):
                log.debug("alert %s is open already", condition)
                return False
            alert_id = row.id
        self._announce(alert)
        if self.webhook is not None:
            self._send(alert_id, OPENED, payload_of(row, OPENED))
        return True

    def once(self, condition: str, alert: AlertEvent) -> bool:
        """A one-off event: sent once, whatever happens to the task that reports it."""
        alert = self._clean(alert)
        with session_scope(self.url) as session:
            if alert_rows.condition_seen(session, condition=condition):
                return False
            row = self._row(condition, alert)
            row.resolved_at = row.opened_at = utcnow()
            session.add(row)
            session.flush()
            alert_id = row.id
        self._announce(alert)
        if self.webhook is not None:
            self._send(alert_id, OPENED, payload_of(row, OPENED))
        return True

    def resolve(self, condition: str) -> bool:
        """Close the condition, log it, and send its resolution (only where its opening was
        for a webhook); it may be alerted again once it reopens."""
        owed: list[tuple[int, dict[str, Any]]] = []
        with session_scope(self.url) as session:
            rows = alert_rows.open_alerts(session, condition=condition)
            for row in rows:
                row.resolved_at = utcnow()
                if row.delivery == OWED:
                    row.delivery = SKIPPED  # the resolution says what it would have said
                if self.webhook is None or row.delivery == NO_WEBHOOK:
                    row.resolve_delivery = NO_WEBHOOK
                else:
                    row.resolve_delivery = OWED
                    owed.append((row.id, payload_of(row, RESOLVED)))
                log.info("%s", resolution_text(row))
        for alert_id, payload in owed:
            self._send(alert_id, RESOLVED, payload)
        return bool(rows)

    def open_conditions(self, prefix: str) -> list[str]:
        with session_scope(self.url) as session:
            return alert_rows.open_conditions(session, prefix=prefix)

    def redeliver(self) -> int:
        """Send the messages earlier attempts could not; returns how many went out (or were
        queued). Never a delivered one, nor the opening of a condition that resolved.

        A message is owed once its own tries are spent, or once they have had time to be
        (its delivery task may have been lost with a worker). Without a webhook nothing is
        owed: what was (the webhook was removed) is marked `none`.
        """
        now = utcnow()
        with session_scope(self.url) as session:
            if self.webhook is None:
                alert_rows.give_up_owed(session, before=now, state=NO_WEBHOOK)
                return 0
            alert_rows.give_up_owed(session, before=now - REDELIVERY_WINDOW)
            since, attempts = now - REDELIVERY_WINDOW, self.policy.attempts
            settled = now - timedelta(seconds=self._tries_take())
            openings = alert_rows.owed_openings(
                session, opened_after=since, settled_before=settled, attempts=attempts
            )
            resolutions = alert_rows.owed_resolutions(
                session, resolved_after=since, settled_before=settled, attempts=attempts
            )
            pending = [(row.id, OPENED, payload_of(row, OPENED)) for row in openings]
            pending += [(row.id, RESOLVED, payload_of(row, RESOLVED)) for row in resolutions]
        return sum(self._send(alert_id, message, body) for alert_id, message, body in pending)

    def deliver_once(self, alert_id: int, message: str = OPENED) -> bool:
        """One try at sending a recorded alert's message (a delivery task's); True once
        nothing more is to be done (delivered, or not owed)."""
        with session_scope(self.url) as session:
            row = session.get(Alert, alert_id)
            if row is None or _state(row, message) != OWED:
                return True  # gone, sent by another try, skipped, or never for a webhook
            payload = payload_of(row, message)
        return self._deliver(alert_id, message, payload, attempts=1)

    def _row(self, condition: str, alert: AlertEvent) -> Alert:
        return Alert(
            condition=condition,
            event=alert.event,
            namespace=alert.namespace,
            service=alert.service,
            timestamp=alert.timestamp,
            text=alert.text,
            attempts=0,
            delivery=NO_WEBHOOK if self.webhook is None else OWED,
            resolve_attempts=0,
        )

    def _announce(self, alert: AlertEvent) -> None:
        """The one log line of an alert that opens (or of a one-off event)."""
        level = logging.INFO if alert.event.endswith(".succeeded") else logging.WARNING
        suffix = " (recorded only: no ALERT_WEBHOOK_URL set)" if self.webhook is None else ""
        log.log(level, "alert %s: %s%s", alert.event, alert.text, suffix)

    def _tries_take(self) -> float:
        """About how long one message's tries may take, timeouts and pauses included."""
        attempts = self.policy.attempts
        return attempts * (self.settings.alert_webhook_timeout + self.policy.max_delay) + 60

    def _send(self, alert_id: int, message: str, payload: dict[str, Any]) -> bool:
        """Deliver now, or hand it to the dispatcher; True if sent or queued."""
        if self.dispatch is not None:
            try:
                self.dispatch(alert_id, message)
                return True
            except Exception as exc:  # the broker is down: send it here instead
                # Only the type: a broker error may quote its URL and password.
                log.warning(
                    "could not queue alert %s (%s); sending it now",
                    payload["event"],
                    type(exc).__name__,
                )
        return self._deliver(alert_id, message, payload)

    def _clean(self, alert: AlertEvent) -> AlertEvent:
        return AlertEvent(
            event=alert.event,
            text=redact(alert.text, self.secrets),
            namespace=alert.namespace,
            service=alert.service,
            timestamp=alert.timestamp,
        )

    def _deliver(
        self, alert_id: int, message: str, payload: dict[str, Any], attempts: int | None = None
    ) -> bool:
        """Post the message, with retries; True once it needs no more tries."""
        if self.webhook is None:  # queued before the webhook was removed: recorded only
            _record(self.url, alert_id, message, tries=0, state=NO_WEBHOOK)
            return True
        delivered, tries = False, 0
        attempts = attempts or self.policy.attempts
        for attempt in range(1, attempts + 1):
            tries = attempt
            try:
                code = self.post(
                    self.webhook.get_secret_value(), payload, self.settings.alert_webhook_timeout
                )
                reason = f"answered {code}"
                delivered = 200 <= code < 300
            except WebhookUnreachable as exc:
                reason = str(exc)
            if delivered:
                break
            log.warning(
                "alert webhook (ALERT_WEBHOOK_URL) %s for %s %s (attempt %d of %d)",
                reason,
                payload["event"],
                message,
                attempt,
                attempts,
            )
            if attempt < attempts:
                self.sleep(self.policy.delay(attempt))
        _record(self.url, alert_id, message, tries=tries, state=DELIVERED if delivered else None)
        return delivered


def _state(row: Alert, message: str) -> str | None:
    return row.delivery if message == OPENED else row.resolve_delivery


def _record(url: str, alert_id: int, message: str, *, tries: int, state: str | None) -> None:
    """Count the tries of one message, and its new delivery state (None: unchanged)."""
    with session_scope(url) as session:
        row = session.get(Alert, alert_id)
        if row is None:
            return
        if message == OPENED:
            row.attempts += tries
            if state is not None:
                row.delivery = state
                row.delivered_at = utcnow() if state == DELIVERED else row.delivered_at
        else:
            row.resolve_attempts += tries
            if state is not None:
                row.resolve_delivery = state
                row.resolve_delivered_at = utcnow() if state == DELIVERED else None


def alerter_for(fleet: Any) -> Alerter:
    """The alerter of a Fleet (settings and its secrets); in a worker it queues deliveries."""
    return Alerter(fleet.settings, fleet.secrets(), dispatch=_dispatch)


def safely(action: Callable[[], object], what: str) -> None:
    """Run an alerting step; an alert must never break the work it reports on."""
    try:
        action()
    except Exception:
        log.exception("could not record the alert for %s", what)
