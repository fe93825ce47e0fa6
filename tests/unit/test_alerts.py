"""Alerts: staleness, failed backups, finished restores, to a real webhook server on loopback."""

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.fleet import Fleet
from workers.monitoring.alerts import Alerter, AlertEvent
from workers.monitoring.notify import check_staleness, report_backup_outcome
from workers.operations.backup import run_backup
from workers.operations.restore import run_restore

SECRET = "sup3r-s3cret-api-key"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def fleet_with(tmp_path: Path, webhook: WebhookServer, **overrides: Any) -> Fleet:
    values: dict[str, Any] = {
        "alert_webhook_url": SecretStr(webhook.url),
        "backfleet_api_keys": SecretStr(SECRET),
        "alert_webhook_attempts": 3,
        **overrides,
    }
    return make_fleet(tmp_path, **values)


def test_staleness_is_alerted_once_per_open_condition_and_reopens(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = fleet_with(tmp_path, webhook, backup_max_age="2h")
    old = take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
    found = check_staleness(fleet)
    assert {(f.service, f.stale) for f in found} == {(None, True), ("db", True), ("files", True)}
    # One alert per stale service; the namespace is stale through them, not alerted itself.
    assert webhook.events() == ["backup.stale"] * 2
    bodies = {body.get("service"): body for body in webhook.received}
    assert bodies["db"]["namespace"] == "app" and bodies["db"]["timestamp"] == old
    assert "service db of namespace app is stale" in bodies["db"]["text"]
    assert "3.0 h old (its max_age is 2 h)" in bodies["db"]["text"]
    assert bodies["files"]["service"] == "files"
    assert set(bodies["db"]) == {"text", "event", "status", "namespace", "timestamp", "service"}
    assert bodies["db"]["status"] == "open"

    check_staleness(fleet)  # still stale: nobody is told twice
    assert len(webhook.received) == 2

    take_backup(fleet)  # fresh again: the conditions close, and say so once
    assert not any(f.stale for f in check_staleness(fleet))
    with session_scope(fleet.settings.database_url) as session:
        assert all(row.resolved_at is not None for row in session.query(Alert))
    resolved = webhook.received[2:]
    assert [(body["event"], body["status"]) for body in resolved] == [
        ("backup.stale", "resolved")
    ] * 2
    assert {body["service"] for body in resolved} == {"db", "files"}
    assert "RESOLVED: backup.stale for service db of namespace app" in str(resolved)
    check_staleness(fleet)
    assert len(webhook.received) == 4
    later = fleet_with(tmp_path, webhook, backup_max_age="1")  # an RPO of one second
    time.sleep(1.1)
    check_staleness(later)
    assert webhook.events() == ["backup.stale"] * 6  # reopened: told again
    assert [body["status"] for body in webhook.received[4:]] == ["open"] * 2


def test_a_namespace_alert_of_an_earlier_version_is_closed(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    alerter = Alerter(fleet.settings)
    assert alerter.open("backup.stale:app", AlertEvent(event="backup.stale", text="old"))
    take_backup(fleet)
    check_staleness(fleet)
    assert alerter.open_conditions("backup.stale:") == []


def test_a_namespace_never_backed_up_turns_stale_once_its_first_run_was_due(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = fleet_with(tmp_path, webhook, backup_max_age="2h")  # hourly, at minute 0
    installed = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    assert not any(f.stale for f in check_staleness(fleet, now=installed))
    due_by = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # the 11:00 run, plus 2 h of grace
    assert {f.due_by for f in check_staleness(fleet, now=due_by) if f.service} == {due_by}
    assert webhook.received == []
    found = check_staleness(fleet, now=due_by + timedelta(minutes=1))
    assert all(f.stale and f.age is None for f in found)
    assert webhook.events() == ["backup.stale"] * 2
    text = webhook.received[0]["text"]
    assert "has no successful backup, and one was due by 2026-03-02 13:00 UTC" in text
    assert "timestamp" not in webhook.received[0]


def test_a_failed_backup_is_alerted_once_without_secrets(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    shutil.rmtree(tmp_path / "data" / "files")
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session, namespace="app", services=["db", "files"], only_config=False, trigger="test"
        ).timestamp
    outcome = run_backup(fleet, namespace="app", timestamp=stamp)
    assert outcome.status == "Failed"
    assert webhook.events() == ["backup.failed"]
    body = webhook.received[0]
    assert body["namespace"] == "app" and body["timestamp"] == stamp
    assert "files" in body["text"] and "does not exist" in body["text"]
    # The same failure reported again (a redelivered task): not sent twice.
    report_backup_outcome(fleet, "app", stamp, "Failed", outcome.error)
    assert webhook.events() == ["backup.failed"]
    # A secret in an error never leaves.
    report_backup_outcome(fleet, "app", "2026-01-01t00-00-00", "Failed", f"boom {SECRET}")
    assert SECRET not in str(webhook.received) and "T0K3N" not in str(webhook.received)
    assert "***" in webhook.received[-1]["text"]


def test_restores_are_alerted_when_they_end(tmp_path: Path, webhook: WebhookServer) -> None:
    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    with session_scope(fleet.settings.database_url) as session:
        restore = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=["db", "files"],
            skipped=[],
            backup_url="file:///x",
        )
        restore_id = restore.id
    assert run_restore(fleet, restore_id=restore_id) == "Success"
    assert webhook.events() == ["restore.succeeded"]
    assert webhook.received[0]["timestamp"] == stamp
    # A restore whose artifact is gone fails, and says so.
    for path in (tmp_path / "store" / "app" / stamp).glob("db.*"):
        path.unlink()
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=["db"],
            skipped=[],
            backup_url="file:///x",
        ).id
    assert run_restore(fleet, restore_id=restore_id) == "Failed"
    assert webhook.events() == ["restore.succeeded", "restore.failed"]
    run_restore(fleet, restore_id=restore_id)  # a redelivery of finished work: no repeat
    assert len(webhook.received) == 2


def test_the_webhook_is_retried_with_backoff_then_redelivered_later(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    pauses: list[float] = []
    alerter = Alerter(fleet.settings, fleet.secrets(), sleep=pauses.append)
    webhook.failures = 2
    alert = AlertEvent(event="verify.failed", text="x", namespace="app", timestamp="t")
    assert alerter.open("verify.failed:app:t", alert)
    assert webhook.requests == 3 and webhook.events() == ["verify.failed"]
    assert len(pauses) == 2 and pauses[0] <= 1.0 and pauses[1] <= 2.0  # exponential, jittered

    webhook.failures = 10  # down for longer than one alert's tries
    assert alerter.open("backup.stale:app", AlertEvent(event="backup.stale", text="y"))
    assert webhook.events() == ["verify.failed"]
    with session_scope(fleet.settings.database_url) as session:
        row = session.query(Alert).filter_by(condition="backup.stale:app").one()
        assert row.delivered_at is None and row.attempts == 3
    webhook.failures = 0  # back: the next check sends what is owed, once
    assert alerter.redeliver() == 1
    assert alerter.redeliver() == 0
    assert webhook.events() == ["verify.failed", "backup.stale"]


def test_an_unreachable_webhook_never_raises_nor_logs_its_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = make_fleet(
        tmp_path,
        alert_webhook_url=SecretStr("http://127.0.0.1:1/hooks/T0K3N"),
        alert_webhook_attempts=2,
        alert_webhook_timeout=1,
    )
    alerter = Alerter(fleet.settings, fleet.secrets(), sleep=lambda _: None)
    assert alerter.open("c", AlertEvent(event="backup.stale", text="z")) is True
    assert "T0K3N" not in caplog.text and "ConnectError" in caplog.text


def queueing_alerter(fleet: Fleet) -> tuple[Alerter, list[int]]:
    """An alerter as a worker has it, its deliveries queued (here: the alert ids listed)."""
    queued: list[int] = []

    def dispatch(alert_id: int, message: str) -> None:
        assert message == "opened"
        queued.append(alert_id)

    return Alerter(fleet.settings, fleet.secrets(), dispatch=dispatch), queued


def test_in_a_worker_delivery_is_handed_to_a_task_and_tried_once_per_run(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    alerter, queued = queueing_alerter(fleet_with(tmp_path, webhook))
    assert alerter.open("backup.stale:app", AlertEvent(event="backup.stale", text="late"))
    assert len(queued) == 1 and webhook.requests == 0  # nothing sent by the reporting task

    webhook.failures = 1
    assert alerter.deliver_once(queued[0]) is False  # one try per run: the task retries
    assert alerter.redeliver() == 0  # its task still has tries left: not owed yet
    assert alerter.deliver_once(queued[0]) is True
    assert alerter.deliver_once(queued[0]) is True  # already delivered: not sent twice
    assert webhook.requests == 2 and webhook.events() == ["backup.stale"]


def test_an_alert_whose_tries_are_spent_is_owed_to_the_next_check(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    alerter, queued = queueing_alerter(fleet_with(tmp_path, webhook))  # 3 attempts
    alerter.open("backup.stale:app", AlertEvent(event="backup.stale", text="late"))
    webhook.failures = 3
    assert [alerter.deliver_once(queued[0]) for _ in range(3)] == [False] * 3
    assert alerter.redeliver() == 1 and queued == [queued[0]] * 2  # queued again
    assert alerter.deliver_once(queued[-1]) is True
    assert alerter.redeliver() == 0


def test_when_the_broker_cannot_take_the_delivery_it_is_sent_inline(
    tmp_path: Path, webhook: WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = fleet_with(tmp_path, webhook)

    def broker_down(alert_id: int, message: str) -> None:
        raise ConnectionError("redis://:hunter2@broker:6379/0 refused")

    alerter = Alerter(fleet.settings, fleet.secrets(), dispatch=broker_down)
    assert alerter.open("backup.stale:app", AlertEvent(event="backup.stale", text="late"))
    assert webhook.events() == ["backup.stale"]
    assert "ConnectionError" in caplog.text and "hunter2" not in caplog.text
