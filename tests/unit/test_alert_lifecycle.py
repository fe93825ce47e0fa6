"""An alert's life, as an on-call person sees it: one message when it opens, one when it
resolves, nothing in between or after; without a webhook, recorded and logged once, never
queued, retried or re-sent. A real catalog (SQLite) and a real webhook server on loopback."""

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from tests.webhook import WebhookServer, webhook_server
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent, deliver_in_background
from workers.monitoring.notify import check_staleness, report_backup_outcome


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def queued() -> Iterator[list[tuple[int, str]]]:
    """The deliveries a worker would queue (deliver_alert tasks), listed instead."""
    found: list[tuple[int, str]] = []
    deliver_in_background(lambda alert_id, message: found.append((alert_id, message)))
    try:
        yield found
    finally:
        deliver_in_background(None)


def rows(fleet: Fleet) -> list[dict[str, Any]]:
    with session_scope(fleet.settings.database_url) as session:
        return [
            {
                "condition": row.condition,
                "open": row.resolved_at is None,
                "delivery": row.delivery,
                "attempts": row.attempts,
                "resolve_delivery": row.resolve_delivery,
                "resolve_attempts": row.resolve_attempts,
            }
            for row in session.query(Alert).order_by(Alert.condition)
        ]


def warnings_about(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and words in r.getMessage()
    ]


def test_without_a_webhook_an_alert_is_recorded_and_logged_once_never_queued(
    tmp_path: Path, queued: list[tuple[int, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="workers.monitoring")
    fleet = make_fleet(tmp_path, backup_max_age="2h")  # no ALERT_WEBHOOK_URL
    take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
    for _ in range(4):  # four staleness checks while it stays stale
        check_staleness(fleet)
    assert queued == []  # no deliver_alert task, ever
    assert rows(fleet) == [
        {
            "condition": f"backup.stale:app:{service}",
            "open": True,
            "delivery": "none",
            "attempts": 0,
            "resolve_delivery": None,
            "resolve_attempts": 0,
        }
        for service in ("db", "files")
    ]
    stale = warnings_about(caplog, "is stale")
    assert len(stale) == 2  # once per service, at open: not at every check
    assert all("recorded only: no ALERT_WEBHOOK_URL set" in line for line in stale)

    take_backup(fleet)  # fresh again
    for _ in range(3):
        check_staleness(fleet)
    assert queued == []
    assert [(r["open"], r["delivery"], r["resolve_delivery"]) for r in rows(fleet)] == [
        (False, "none", "none")
    ] * 2
    assert len(warnings_about(caplog, "is stale")) == 2  # nothing more at WARNING
    resolved = [r for r in caplog.records if "RESOLVED" in r.getMessage()]
    assert [r.levelno for r in resolved] == [logging.INFO] * 2  # once each, at resolve
    assert Alerter(fleet.settings).redeliver() == 0


def test_with_a_webhook_open_then_resolve_is_two_messages_over_many_checks(
    tmp_path: Path, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = make_fleet(
        tmp_path,
        alert_webhook_url=SecretStr(webhook.url),
        alert_webhook_attempts=2,
        backup_max_age="2h",
    )
    take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
    for _ in range(4):
        check_staleness(fleet)
    take_backup(fleet)
    for _ in range(4):
        check_staleness(fleet)
    statuses = [(body["service"], body["status"]) for body in webhook.received]
    assert sorted(statuses) == [
        ("db", "open"),
        ("db", "resolved"),
        ("files", "open"),
        ("files", "resolved"),
    ]
    assert statuses.index(("db", "open")) < statuses.index(("db", "resolved"))
    assert webhook.requests == 4
    assert [(r["delivery"], r["resolve_delivery"]) for r in rows(fleet)] == [
        ("delivered", "delivered")
    ] * 2
    assert len(warnings_about(caplog, "is stale")) == 2
    assert Alerter(fleet.settings).redeliver() == 0 and webhook.requests == 4


def test_a_resolved_alert_is_never_re_sent_by_the_sweep(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = make_fleet(tmp_path, alert_webhook_url=SecretStr(webhook.url), alert_webhook_attempts=2)
    alerter = Alerter(fleet.settings, sleep=lambda _: None)
    stale = AlertEvent(event="backup.stale", text="Backfleet: db is stale", namespace="app")

    webhook.failures = 100  # down while the condition opens and resolves
    assert alerter.open("backup.stale:app:db", stale)
    assert alerter.resolve("backup.stale:app:db")
    failed = AlertEvent(event="backup.failed", text="Backfleet: backup failed", namespace="app")
    assert alerter.once("backup.failed:app:t1", failed)  # a one-off event, undelivered too
    assert webhook.received == []
    assert rows(fleet)[1] == {
        "condition": "backup.stale:app:db",
        "open": False,
        "delivery": "skipped",  # not delivered before it resolved: never sent now
        "attempts": 2,
        "resolve_delivery": "pending",
        "resolve_attempts": 2,
    }

    webhook.failures = 0  # back: the next check sends what is owed, once
    assert alerter.redeliver() == 2
    for _ in range(3):
        assert alerter.redeliver() == 0
    assert sorted((b["event"], b.get("status", "-")) for b in webhook.received) == [
        ("backup.failed", "-"),  # a one-off event has no open/resolved status
        ("backup.stale", "resolved"),
    ]
    text = next(b["text"] for b in webhook.received if b["event"] == "backup.stale")
    assert text.startswith("Backfleet: RESOLVED: backup.stale for namespace app, open ")
    assert text.endswith("(it said: db is stale)")

    # Delivered ones are left alone too, whatever happens next.
    assert alerter.open("backup.stale:app:db", stale)  # reopens: told
    assert alerter.resolve("backup.stale:app:db")  # and resolved: told
    assert len(webhook.received) == 4
    assert alerter.redeliver() == 0 and len(webhook.received) == 4
    ids = _ids(fleet)
    assert all(alerter.deliver_once(i, m) for i in ids for m in ("opened", "resolved"))
    assert len(webhook.received) == 4  # a redelivered task sends nothing twice


def _ids(fleet: Fleet) -> list[int]:
    with session_scope(fleet.settings.database_url) as session:
        return [row.id for row in session.query(Alert)]


def test_an_undelivered_message_is_given_up_after_a_day(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = make_fleet(tmp_path, alert_webhook_url=SecretStr(webhook.url), alert_webhook_attempts=1)
    alerter = Alerter(fleet.settings, sleep=lambda _: None)
    webhook.failures = 1
    assert alerter.open("drill.overdue:app:db", AlertEvent(event="drill.overdue", text="late"))
    with session_scope(fleet.settings.database_url) as session:
        row = session.query(Alert).one()
        row.opened_at = row.opened_at - timedelta(days=1, minutes=1)
    assert alerter.redeliver() == 0
    assert rows(fleet)[0]["delivery"] == "expired" and webhook.received == []


def test_removing_the_webhook_stops_what_was_owed(
    tmp_path: Path, webhook: WebhookServer, queued: list[tuple[int, str]]
) -> None:
    fleet = make_fleet(tmp_path, alert_webhook_url=SecretStr(webhook.url), alert_webhook_attempts=1)
    alerter = Alerter(fleet.settings, dispatch=lambda i, m: queued.append((i, m)))
    assert alerter.open("backup.stale:app:db", AlertEvent(event="backup.stale", text="late"))
    assert len(queued) == 1  # queued, not yet run
    without = Alerter(
        make_fleet(tmp_path, settings=fleet.settings, alert_webhook_url=None).settings
    )
    assert without.deliver_once(*queued[0]) is True  # the task ends: nothing to retry
    assert without.redeliver() == 0
    assert rows(fleet)[0]["delivery"] == "none" and webhook.requests == 0


def test_a_fresh_install_is_not_stale_nor_logged_before_its_first_backup_was_due(
    tmp_path: Path, queued: list[tuple[int, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """`make up` on a new machine: checks every 5 minutes before and after the first
    backup say nothing (the first scheduled run, 11:00, plus 2 h of grace)."""
    fleet = make_fleet(tmp_path, backup_max_age="2h")
    installed = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    for minutes in range(0, 150, 5):
        assert not any(
            f.stale for f in check_staleness(fleet, now=installed + timedelta(minutes=minutes))
        )
    take_backup(fleet)
    for _ in range(3):
        check_staleness(fleet)
    assert rows(fleet) == [] and queued == []
    assert warnings_about(caplog, "stale") == []


def test_a_one_off_event_is_sent_once_and_listed(tmp_path: Path, webhook: WebhookServer) -> None:
    fleet = make_fleet(tmp_path, alert_webhook_url=SecretStr(webhook.url))
    for _ in range(2):
        report_backup_outcome(fleet, "app", "2026-03-02t10-00-00", "Failed", "disk full")
    assert Alerter(fleet.settings).redeliver() == 0
    assert webhook.events() == ["backup.failed"] and "status" not in webhook.received[0]
    assert rows(fleet)[0]["resolve_delivery"] is None
