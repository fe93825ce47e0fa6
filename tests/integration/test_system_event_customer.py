"""Backup and Restore audit events carry the requester's owner AND customer.

The real path: the API (in-process) takes the request with a `key:owner:customer`
key, the task it enqueued runs eagerly (tasks.backup.run_backup, then
tasks.restore.run_restore) on a real Redis, SQLite catalog and local store, and
the System events it records are read back from the catalog.
"""

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from api.recorder import recorder
from tasks.backup import run_backup
from tasks.restore import run_restore
from tests.unit.test_api import RecordingEnqueue
from workers.audit.user_events import SYSTEM_OP_TYPE
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import SUCCESS, UserEvent
from workers.fleet import current_fleet, reset_fleet
from workers.operations.locks import forget_clients
from workers.settings import get_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "k-customer-secret"
AUTH = {"Authorization": f"Bearer {KEY}"}
BASE = "/athena/api/v1"


@pytest.fixture
def catalog(tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    database = tmp_path / "graph.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY)")
    config = tmp_path / "backfleet.toml"
    config.write_text(
        f'namespace = "app"\n[services.graph]\nkind = "sqlite"\npath = "{database}"\n'
    )
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    for name, value in {
        "BROKER_URL": redis_server.url,
        "DATABASE_URL": url,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "ENABLE_USER_EVENTS": "true",
        "BACKFLEET_API_KEYS": f"{KEY}:ops@example.com:acme",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("BACKFLEET_NAMESPACE", raising=False)
    get_settings.cache_clear()
    reset_fleet()
    forget_clients()
    yield url
    recorder.drain()
    reset_fleet()
    dispose_engines()


def system_events(url: str) -> list[UserEvent]:
    with session_scope(url) as session:
        query = select(UserEvent).where(UserEvent.op_type == SYSTEM_OP_TYPE).order_by(UserEvent.id)
        return list(session.scalars(query))


def test_backup_and_restore_events_name_the_requesters_customer(catalog: str) -> None:
    current_fleet().store.init()
    enqueue = RecordingEnqueue()
    with TestClient(create_app(current_fleet, enqueue)) as client:
        assert client.post(f"{BASE}/ondemandbackup", headers=AUTH, json={}).status_code == 202
        ((_, backup_kwargs, _),) = enqueue.calls
        assert run_backup.apply(kwargs=backup_kwargs).get()["status"] == SUCCESS
        body = {"timestamp": backup_kwargs["timestamp"]}
        assert client.post(f"{BASE}/ondemandrestore", headers=AUTH, json=body).status_code == 202
        _, restore_kwargs, _ = enqueue.calls[1]
        assert run_restore.apply(kwargs=restore_kwargs).get()["status"] == SUCCESS

    backup, restore = system_events(catalog)
    assert (backup.name_hints, restore.name_hints) == (["Backup"], ["Restore"])
    for event in (backup, restore):
        assert (event.user_email, event.customer_name) == ("ops@example.com", "acme")
