"""/metrics (parsed back with Prometheus's own parser) and `backfleet status`, from a catalog."""

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.health_fleet import make_fleet, take_backup
from workers.audit.user_events import record_user_events
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import ServiceSeen
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.metrics import queue_depths
from workers.monitoring.notify import check_staleness
from workers.operations.backup import run_backup
from workers.operations.verify import verify_backups
from workers.timestamps import parse_timestamp

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def scrape(fleet: Fleet, depths: dict[str, int] | None = None) -> Samples:
    app = create_app(lambda: fleet)
    app.state.queue_depths = lambda _url: depths
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def failed_backup(fleet: Fleet, tmp_path: Path) -> str:
    moved = tmp_path / "data" / "files-away"
    (tmp_path / "data" / "files").rename(moved)
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session, namespace="app", services=["db", "files"], only_config=False, trigger="t"
        ).timestamp
    assert run_backup(fleet, namespace="app", timestamp=stamp).status == "Failed"
    moved.rename(tmp_path / "data" / "files")
    return stamp


def test_metrics_come_from_the_catalog(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, backup_max_age="2h")
    old = take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
    failed_backup(fleet, tmp_path)
    verify_backups(fleet)
    check_staleness(fleet)  # no webhook: alerts are only recorded (and logged)
    m = scrape(fleet, {"backup": 2, "verify": 0})
    app = (("namespace", "app"),)
    assert m[("backfleet_backup_last_success_timestamp_seconds", app)] == (
        parse_timestamp(old).timestamp()
    )
    assert m[("backfleet_backup_last_success_size_bytes", app)] > 0
    assert m[("backfleet_backup_last_success_duration_seconds", app)] >= 0
    assert m[("backfleet_backup_failures_total", app)] == 1
    db = (("namespace", "app"), ("service", "db"))
    files = (("namespace", "app"), ("service", "files"))
    assert m[("backfleet_service_last_success_size_bytes", db)] > 0
    assert m[("backfleet_service_failures_total", files)] == 1
    assert ("backfleet_service_failures_total", db) not in m
    read = (("kind", "read"), ("namespace", "app"))
    assert m[("backfleet_verification_last_success", read)] == 1
    assert m[("backfleet_verifications_total", (*read[:1], *app, ("result", "success")))] == 1
    assert m[("backfleet_backup_stale", (("namespace", "app"), ("service", "")))] == 1
    assert m[("backfleet_backup_age_seconds", db)] >= 3 * 3600
    assert m[("backfleet_backup_max_age_seconds", ())] == 7200  # BACKUP_MAX_AGE, as before
    assert m[("backfleet_backup_max_age_seconds", db)] == 7200  # the service's own
    assert m[("backfleet_alerts_open", (("event", "backup.stale"),))] == 2  # db and files
    assert m[("backfleet_queue_depth", (("queue", "backup"),))] == 2
    assert m[("backfleet_broker_up", ())] == 1
    assert not any(name == "backfleet_audit_backlog_events" for name, _ in m)

    line = {
        "opType": "Mutation",
        "createdAt": 1700000000000,
        "nameHints": ["Deploy"],
        "userEmail": "a@example.com",
        "customerName": "acme",
        "responseCode": 200,
        "requestParams": {},
        "requestPayload": "",
        "latencyInMillis": 3,
    }
    settings = fleet.settings.model_copy(update={"enable_user_events": True})
    assert record_user_events([line, line], namespace="app", settings=settings) == 2
    m = scrape(fleet, {"backup": 0})
    assert m[("backfleet_audit_backlog_events", app)] == 2

    take_backup(fleet)
    check_staleness(fleet)
    m = scrape(fleet, None)
    assert m[("backfleet_backup_stale", (("namespace", "app"), ("service", "")))] == 0
    assert ("backfleet_alerts_open", (("event", "backup.stale"),)) not in m
    assert m[("backfleet_broker_up", ())] == 0


@pytest.mark.integration
def test_queue_depths_are_read_from_a_real_redis(redis_server: object) -> None:
    import redis

    url = redis_server.url  # type: ignore[attr-defined]
    client = redis.Redis.from_url(url)
    client.delete("backup", "verify")
    try:
        client.lpush("backup", "a", "b")
        client.lpush("verify\x06\x163", "c")  # a priority-3 message
        depths = queue_depths(url)
        assert depths is not None
        assert depths["backup"] == 2 and depths["verify"] == 1 and depths["restore"] == 0
    finally:
        client.delete("backup", "verify\x06\x163")
    assert queue_depths("redis://127.0.0.1:1/0", timeout=0.5) is None


def test_status_shows_every_namespace_at_a_glance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(tmp_path, enable_regular_backups=True, regular_backup_schedule="0 * * * *")
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    runner = CliRunner()
    never = runner.invoke(main, ["status"])
    assert never.exit_code == 0, never.output  # no backup yet, but none was due yet either
    assert "never" in never.output and "STALE" not in never.output
    assert "  db             never (due by " in never.output
    # A day later (the services were first seen then), the first runs are long overdue.
    with session_scope(fleet.settings.database_url) as session:
        for row in session.query(ServiceSeen):
            row.first_seen_at -= timedelta(days=1)
    overdue = runner.invoke(main, ["status"])
    assert overdue.exit_code == 1  # stale: no backup, and the first runs were due
    assert "never STALE" in overdue.output
    services = json.loads(runner.invoke(main, ["status", "--json"]).output)[0]["services"]
    assert [(s["service"], s["stale"], s["maxAgeSeconds"]) for s in services] == [
        ("db", True, 7200),
        ("files", True, 7200),
    ]
    stamp = take_backup(fleet)
    verify_backups(fleet)
    fine = runner.invoke(main, ["status"])
    assert fine.exit_code == 0, fine.output
    line = fine.output.splitlines()[1]
    assert line.startswith("app ") and f"{stamp} Success" in line and "STALE" not in line
    assert "Success 20" in line  # verified, with its date
    rows = json.loads(runner.invoke(main, ["status", "--json"]).output)
    assert rows[0]["lastSuccess"] == stamp and rows[0]["verified"] == "Success"
    upcoming = datetime.fromisoformat(rows[0]["nextBackup"])
    assert upcoming.minute == 0 and timedelta(0) < upcoming - datetime.now(UTC) <= timedelta(
        hours=1
    )
    assert rows[0]["openAlerts"] == 0
    shutil.rmtree(tmp_path / "store" / "app")  # the store lost everything
    verify_backups(fleet)
    broken = json.loads(runner.invoke(main, ["status", "--json"]).output)
    assert broken[0]["verified"] == "Failed" and broken[0]["openAlerts"] == 1
