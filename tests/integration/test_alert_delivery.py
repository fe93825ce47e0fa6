"""Alerts through a real worker: a hanging webhook holds neither the backup task nor its lock;
an alert is told once when it opens and once when it resolves, and never queued without a
webhook."""

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from tests.fleet_processes import FleetProcesses, free_port, wait_for
from tests.health_fleet import take_backup
from tests.webhook import WebhookServer, webhook_server
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.fleet import Fleet
from workers.operations.locks import PREFIX
from workers.queues import CHECK_STALENESS, DELIVER_ALERT
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.stores.local import LocalStore
from workers.transfer.crypto import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "alerts-key-7d2a"
API = "/athena/api/v1"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def test_a_hanging_webhook_does_not_hold_the_backup_and_is_delivered_later(
    tmp_path: Path, redis_server: Any, webhook: WebhookServer
) -> None:
    config = tmp_path / "backfleet.toml"
    config.write_text(  # a folder that does not exist: the backup fails and alerts
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{tmp_path / "gone"}"\n'
    )
    port = free_port()
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "BACKFLEET_API_KEYS": KEY,
        "BACKFLEET_API_PORT": str(port),
        "ALERT_WEBHOOK_URL": webhook.url,
        "ALERT_WEBHOOK_ATTEMPTS": "3",
        "BACKUP_ENCRYPTION_KEY": generate_key(),  # for the log scan: it must not show
        # Longer than the test waits for the lock: an inline delivery would hold it.
        "ALERT_WEBHOOK_TIMEOUT": "90",
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
        env.pop(name, None)
    locks = redis.Redis.from_url(redis_server.url)
    processes = FleetProcesses(env, tmp_path / "logs")
    try:
        processes.prepare()
        processes.worker(f"alerts-{port}")
        processes.api(port)
        webhook.release.clear()  # the webhook hangs until the test lets it answer
        with httpx2.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": KEY}, timeout=10
        ) as api:
            assert api.post(f"{API}/ondemandbackup", json={}).status_code == 202

            def failed() -> bool:
                return bool(api.get(f"{API}/backup/latest").json().get("status") == "Failed")

            wait_for(failed, seconds=60, what="the backup to fail")
        # The backup task is over and its namespace free while the webhook still hangs.
        wait_for(lambda: not locks.exists(PREFIX + "app"), seconds=20, what="the lock to go")
        wait_for(lambda: webhook.held == 1, seconds=30, what="the delivery task to call")
        assert webhook.events() == []

        webhook.failures = 1  # answers 503 once: the delivery task retries
        webhook.release.set()
        wait_for(lambda: webhook.events() == ["backup.failed"], seconds=60, what="the alert")
        assert webhook.requests == 2
        assert "does not exist" in webhook.received[0]["text"]
    finally:
        processes.close()
        locks.close()


def check_in_worker(processes: FleetProcesses, worker: str) -> None:
    """One staleness check (beat's STALENESS_CHECK_SCHEDULE task), run by the worker."""
    argv = [sys.executable, "-m", "celery", "-A", "tasks.app", "call", "--queue", "maintenance"]
    called = subprocess.run(
        [*argv, CHECK_STALENESS],
        env=processes.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    task_id = called.stdout.strip()
    wait_for(
        lambda: f"{CHECK_STALENESS}[{task_id}] succeeded" in processes.log_of(worker),
        seconds=60,
        what="the staleness check",
    )


@pytest.mark.parametrize("told", [False, True], ids=["no-webhook", "webhook"])
def test_a_worker_tells_an_alert_once_when_it_opens_and_once_when_it_resolves(
    tmp_path: Path, redis_server: Any, webhook: WebhookServer, told: bool
) -> None:
    """Checks every few minutes while a service is stale, then fresh: with a webhook, two
    messages and two deliver_alert tasks; without, none queued and one warning."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("alpha\n")
    services = (
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{tmp_path}/files"\n'
    )
    (tmp_path / "backfleet.toml").write_text(services)
    catalog, store = f"sqlite:///{tmp_path}/catalog.db", tmp_path / "store"
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": catalog,
        "BACKFLEET_CONFIG": str(tmp_path / "backfleet.toml"),
        "OBJECT_STORE_LOCATION_LOCAL": str(store),
        "BACKUP_MAX_AGE": "2h",
        "ALERT_WEBHOOK_ATTEMPTS": "2",
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS", "ALERT_WEBHOOK_URL"):
        env.pop(name, None)
    if told:
        env["ALERT_WEBHOOK_URL"] = webhook.url
    processes = FleetProcesses(env, tmp_path / "logs")
    # This process takes the backups, at chosen moments, on the worker's catalog and store.
    fleet = Fleet(
        settings=Settings(database_url=catalog, object_store_location_local=store),
        config=parse_fleet_config(services),
        store=LocalStore(store),
    )
    try:
        processes.prepare()
        take_backup(fleet, moment=datetime.now(UTC) - timedelta(hours=3))
        worker = f"checks-{told}-{free_port()}"
        processes.worker(worker, queues="maintenance")
        for _ in range(3):  # stale: opened once
            check_in_worker(processes, worker)
        take_backup(fleet)
        for _ in range(3):  # fresh: resolved once
            check_in_worker(processes, worker)

        def deliveries(word: str) -> int:
            lines = processes.log_of(worker).splitlines()
            return len([line for line in lines if f"{DELIVER_ALERT}[" in line and word in line])

        if told:
            wait_for(lambda: len(webhook.received) == 2, seconds=60, what="two messages")
            wait_for(lambda: deliveries("succeeded") == 2, seconds=30, what="the deliveries")
            assert [body["status"] for body in webhook.received] == ["open", "resolved"]
        check_in_worker(processes, worker)  # and once more: nothing new
        assert deliveries("received") == (2 if told else 0)
        assert len(webhook.received) == (2 if told else 0)
        lines = processes.log_of(worker).splitlines()
        assert len([line for line in lines if "WARNING" in line and "is stale" in line]) == 1
        assert len([line for line in lines if "INFO" in line and "RESOLVED" in line]) == 1
        with session_scope(catalog) as session:
            (row,) = session.query(Alert).all()
            states = (row.resolved_at is not None, row.delivery, row.resolve_delivery)
        assert states == ((True, "delivered", "delivered") if told else (True, "none", "none"))
    finally:
        processes.close()
        dispose_engines()
