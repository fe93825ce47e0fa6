"""Verification, test restore, retention, staleness and metrics through a real Celery worker,
API and Redis. Each scheduled task is sent as beat sends it, and the test waits for its
result (a task that crashes fails the test) and checks what it did in the catalog."""

import time
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tasks.app import app
from tests.integration.test_fleet_e2e import API, Fleet, fleet  # noqa: F401 (the fixture)
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert, ServiceSeen

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TASK_TIMEOUT = 120
SERVICES = ["app:gitserver", "app:metagraph", "app:postgres"]
STALE = ["app", *SERVICES]  # the namespace is stale through its services


def run(redis_url: str, task: str) -> Any:
    """Send `task` as beat does, wait for its result; re-raises the task's own error."""
    with app.connection_for_write(redis_url) as connection:
        sent = app.send_task(task, kwargs={}, connection=connection)  # routed by name
    results = Celery("health-e2e", backend=redis_url)  # where the worker stores results
    try:
        return results.AsyncResult(sent.id).get(timeout=TASK_TIMEOUT)
    finally:
        results.close()


def metric(running: Fleet, name: str, **labels: str) -> float | None:
    text = running.api.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def wait_metric(running: Fleet, name: str, **labels: str) -> float:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = metric(running, name, **labels)
        if value is not None:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{name} {labels} never appeared")


def stale_alerts(running: Fleet) -> dict[str, bool]:
    """Each backup.stale alert's condition, and whether it is still open."""
    with session_scope(running.env["DATABASE_URL"]) as session:
        rows = session.scalars(select(Alert).where(Alert.event == "backup.stale")).all()
        return {row.condition: row.resolved_at is None for row in rows}


def backup(running: Fleet) -> str:
    answer = running.api.post(f"{API}/ondemandbackup", json={})
    assert answer.status_code == 202, answer.text
    timestamp = str(answer.json()["message"].rsplit(" ", 1)[1])
    assert running.wait_status(f"{API}/backup/{timestamp}")["status"] == "Success"
    return timestamp


# Keep one backup per hour, and only the newest hour: of two backups, the older goes.
@pytest.mark.fleet_config(
    "[retention]\nkeep-hourly = 1\nkeep-daily = 0\nkeep-weekly = 0\n"
    "keep-monthly = 0\nkeep-yearly = 0\n"
)
def test_scheduled_checks_run_on_the_worker(fleet: Fleet, redis_server: Any) -> None:  # noqa: F811
    try:
        # A fresh install: no backup yet, but none was due yet either.
        assert run(redis_server.url, "tasks.alerts.check_staleness")["stale"] == []
        assert stale_alerts(fleet) == {}
        # As if the fleet had first seen its services a day ago: their first runs are
        # overdue, and the check opens an alert for each service.
        with session_scope(fleet.env["DATABASE_URL"]) as session:
            for row in session.scalars(select(ServiceSeen)):
                row.first_seen_at -= timedelta(days=1)
        assert sorted(run(redis_server.url, "tasks.alerts.check_staleness")["stale"]) == STALE
        assert stale_alerts(fleet) == {f"backup.stale:{c}": True for c in SERVICES}

        older = backup(fleet)
        time.sleep(1.1)  # timestamps have whole seconds
        newer = backup(fleet)

        # Retention deletes the older backup, from the catalog and from the store.
        done = run(redis_server.url, "tasks.retention.apply_retention")
        assert done["primary"] == {"app": {"kept": 1, "deleted": [older]}}
        assert fleet.api.get(f"{API}/backup/{older}").status_code == 404
        assert not (fleet.store / "app" / older).exists()
        assert (fleet.store / "app" / newer / "manifest.json").exists()

        run(redis_server.url, "tasks.verify.verify_backups")
        assert wait_metric(fleet, "backfleet_verification_last_success", kind="read") == 1
        latest = fleet.api.get(f"{API}/backup/latest").json()
        assert latest["timestamp"] == newer
        assert latest["verified"] == "Success" and latest["verifiedAt"]

        run(redis_server.url, "tasks.verify.test_restore")
        assert wait_metric(fleet, "backfleet_verification_last_success", kind="restore") == 1

        # Fresh now: the check closes the alert it opened.
        assert run(redis_server.url, "tasks.alerts.check_staleness")["stale"] == []
        assert stale_alerts(fleet) == {f"backup.stale:{c}": False for c in SERVICES}
        assert metric(fleet, "backfleet_backup_stale", namespace="app", service="") == 0
        status = fleet.cli("status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert '"verified": "Success"' in status.stdout
    finally:
        dispose_engines()
