"""Secrets stay put, through a real worker, API, catalog, store and webhook.

A `command` service whose dump is `env` shows what a tool's environment holds:
only the base variables, its `env` list and its own password. A postgres
service whose URL carries a (percent-encoded) password fails against the real
server: the catalog row, the API's answer and the alert hold no part of it.
FleetProcesses.close() then scans every log for every secret given.
"""

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pyrage
import pytest
import zstandard
from psycopg.conninfo import conninfo_to_dict
from pyrage import x25519

from tests.fleet_processes import FleetProcesses, free_port, wait_for
from tests.secret_scan import given_secrets
from tests.servers import PostgresServer
from tests.webhook import WebhookServer, webhook_server
from workers.redact import url_password_forms
from workers.transfer.crypto import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "secrets-e2e-key-51c9"
API = "/athena/api/v1"
TOOL_PASSWORD = "tool-pw-0b6e41d2"
PG_PASSWORD = "Pg%40pa55w0rd%2Fs3cret-77f0"  # p@… /…: as it must be written in a URL
BASE = {"PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_"}  # PWD etc.: env itself may add


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


def read_artifact(store: Path, namespace: str, timestamp: str, identity: Any) -> bytes:
    (path,) = [p for p in (store / namespace / timestamp).iterdir() if p.name.endswith(".enc")]
    plain = pyrage.decrypt(path.read_bytes(), [identity])
    return zstandard.ZstdDecompressor().decompressobj().decompress(plain)


def test_no_fleet_secret_reaches_a_tool_an_error_an_alert_or_a_log(
    tmp_path: Path, redis_server: Any, postgres_server: PostgresServer, webhook: WebhookServer
) -> None:
    server = conninfo_to_dict(postgres_server.admin_url)
    pg_url = (
        f"postgresql://backup:{PG_PASSWORD}@{server.get('host', '127.0.0.1')}:"
        f"{server.get('port', 5432)}/backfleet_no_such_database"
    )
    config = tmp_path / "backfleet.toml"
    config.write_text(
        'namespace = "app"\n'
        '[namespaces.app.services.tool]\nkind = "command"\ndump_command = ["env"]\n'
        'restore_command = ["true"]\npassword_env = "BF_TOOL_PASSWORD"\n'
        'env = ["BF_TOOL_SETTING"]\n'
        f'[namespaces.pgns.services.db]\nkind = "postgres"\nurl = "{pg_url}"\n'
    )
    encryption_key = generate_key()
    port = free_port()
    store = tmp_path / "store"
    env = {
        **os.environ,
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(store),
        "BACKFLEET_API_KEYS": f"{KEY}:ops@example.com:acme",
        "BACKFLEET_API_PORT": str(port),
        "BACKUP_ENCRYPTION_KEY": encryption_key,
        "ALERT_WEBHOOK_URL": webhook.url,
        "ALERT_WEBHOOK_ATTEMPTS": "2",
        "BF_TOOL_PASSWORD": TOOL_PASSWORD,
        "BF_TOOL_SETTING": "shown-to-the-tool",
    }
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "ENABLE_REGULAR_BACKUPS"):
        env.pop(name, None)
    processes = FleetProcesses(env, tmp_path / "logs")
    try:
        processes.prepare()
        processes.worker(f"secrets-{port}")
        processes.api(port)
        with httpx2.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": KEY}, timeout=10
        ) as api:

            def latest(namespace: str) -> dict[str, Any]:
                answer = api.get(f"{API}/backup/latest", params={"namespace": namespace})
                return dict(answer.json()) if answer.status_code == 200 else {}

            for namespace in ("app", "pgns"):
                answer = api.post(f"{API}/ondemandbackup", json={"namespace": namespace})
                assert answer.status_code == 202, answer.text
            done = ("Success", "Failed")
            wait_for(lambda: latest("app").get("status") in done, seconds=90, what="app's backup")
            wait_for(lambda: latest("pgns").get("status") in done, seconds=90, what="pgns's")
            tool, failed = latest("app"), latest("pgns")
            assert (tool["status"], failed["status"]) == ("Success", "Failed"), (tool, failed)
            detail = api.get(
                f"{API}/backup/{failed['timestamp']}", params={"namespace": "pgns"}
            ).text
        wait_for(lambda: "backup.failed" in webhook.events(), seconds=60, what="the alert")

        # What the tool saw: the base variables, its `env` list and its password, nothing else.
        identity = x25519.Identity.from_str(encryption_key)
        seen_text = read_artifact(store, "app", tool["timestamp"], identity).decode()
        seen = dict(line.split("=", 1) for line in seen_text.splitlines() if "=" in line)
        assert set(seen) <= BASE | {"BF_TOOL_SETTING", "BF_TOOL_PASSWORD"}, sorted(seen)
        assert seen["BF_TOOL_PASSWORD"] == TOOL_PASSWORD
        assert seen["BF_TOOL_SETTING"] == "shown-to-the-tool"
        others = {k: v for k, v in given_secrets(env).items() if v != TOOL_PASSWORD}
        assert {"BACKUP_ENCRYPTION_KEY", "AWS_SECRET_KEY"} <= set(others)
        assert [what for what, value in others.items() if value in seen_text] == []

        # The postgres failure, wherever it is shown, holds no part of the URL's password.
        with sqlite3.connect(tmp_path / "catalog.db") as db:
            (row_error,) = db.execute(
                "SELECT error FROM backups WHERE namespace = 'pgns'"
            ).fetchone()
        alert = next(body["text"] for body in webhook.received if body["event"] == "backup.failed")
        assert "does not exist" in row_error
        for shown in (row_error, detail, alert):
            for form in url_password_forms(pg_url):
                if len(form) >= 4:
                    assert form not in shown, shown
    finally:
        processes.close()  # and the scan of every log for every secret given
