"""Alerts through a real worker: a hanging webhook holds neither the backup task nor its lock."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from tests.fleet_processes import FleetProcesses, free_port, wait_for
from tests.webhook import WebhookServer, webhook_server
from workers.operations.locks import PREFIX
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
