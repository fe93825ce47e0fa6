"""Verification, test restore and metrics through a real Celery worker, API and Redis."""

import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_fleet_e2e import API, Fleet, fleet  # noqa: F401 (the fixture)
from workers.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def send(redis_url: str, task: str) -> None:
    with app.connection_for_write(redis_url) as connection:
        app.send_task(task, kwargs={}, connection=connection)  # routed by name, as beat does


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


def test_scheduled_checks_run_on_the_worker(fleet: Fleet, redis_server: Any) -> None:  # noqa: F811
    answer = fleet.api.post(f"{API}/ondemandbackup", json={})
    assert answer.status_code == 202
    assert fleet.wait_status(f"{API}/backup/latest")["status"] == "Success"

    send(redis_server.url, "tasks.verify.verify_backups")
    assert wait_metric(fleet, "backfleet_verification_last_success", kind="read") == 1
    latest = fleet.api.get(f"{API}/backup/latest").json()
    assert latest["verified"] == "Success" and latest["verifiedAt"]

    send(redis_server.url, "tasks.verify.test_restore")
    assert wait_metric(fleet, "backfleet_verification_last_success", kind="restore") == 1

    send(redis_server.url, "tasks.alerts.check_staleness")
    send(redis_server.url, "tasks.retention.apply_retention")
    assert metric(fleet, "backfleet_backup_stale", namespace="app", service="") == 0
    status = fleet.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert '"verified": "Success"' in status.stdout
