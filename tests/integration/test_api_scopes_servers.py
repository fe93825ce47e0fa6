"""Scoped keys against real servers: a PostgreSQL catalog, tasks sent through Celery to Redis.

Every /athena route of the OpenAPI document, called by two tenants' keys inside
and outside their namespaces: what reaches the broker and the catalog is
exactly what the in-scope calls asked for. Then the CLI, which needs no key,
restores from an unconfigured namespace only with the setting or its flag.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.main import create_app
from api.recorder import recorder
from tasks.app import app as celery_app
from tests.scoped_api import (
    BASE,
    CONFIG,
    KEY_OF,
    SIGNING_KEY,
    TENANTS,
    TS,
    UNCONFIGURED,
    WITHOUT_ROLE,
    athena_calls,
    make_fleet,
    seed,
)
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Backup, Restore
from workers.fleet import Fleet
from workers.operations.jobs import UNCONFIGURED_SOURCE
from workers.queues import QUEUES

pytestmark = pytest.mark.integration
OTHER = {"app": "team-b", "team-b": "app"}


def declare_queues(url: str) -> None:
    """Bind every queue, as workers consuming them would, so sent tasks stay in Redis."""
    with celery_app.connection_for_write(url) as connection:
        for queue in celery_app.amqp.queues.values():
            queue.bind(connection.default_channel).declare()


def queued(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        return {name: int(client.llen(name)) for name in QUEUES if client.llen(name)}
    finally:
        client.close()


@pytest.fixture
def broker(redis_server: Any) -> str:
    url = str(redis_server.url)
    redis.Redis.from_url(url).flushdb()
    declare_queues(url)
    return url


@pytest.fixture
def fleet(
    tmp_path: Path, pg_database: str, broker: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Fleet]:
    monkeypatch.setenv("BROKER_URL", broker)
    fleet = make_fleet(pg_database, tmp_path / "store", broker_url=broker)
    seed(fleet)
    try:
        yield fleet
    finally:
        recorder.drain()
        dispose_engines()


def send_through_celery(broker: str) -> Any:
    def enqueue(task: str, kwargs: dict[str, object], queue: str) -> str:
        with celery_app.connection_for_write(broker) as connection:
            sent = celery_app.send_task(task, kwargs=kwargs, queue=queue, connection=connection)
        return str(sent.id)

    return enqueue


def test_two_tenants_on_every_route(fleet: Fleet, broker: str) -> None:
    client = TestClient(create_app(lambda: fleet, send_through_celery(broker)))
    calls = athena_calls(client.app)  # type: ignore[arg-type]
    for tenant in TENANTS:
        for call in calls:
            for elsewhere in (OTHER[tenant], UNCONFIGURED):
                outside = client.request(**call.request(elsewhere, key=KEY_OF[tenant]))
                assert outside.status_code == 403, (tenant, call, outside.text)
                assert OTHER[tenant] not in outside.text
    assert queued(broker) == {}  # no refused call reached the broker
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Backup).count() == len(TENANTS)  # the seeded ones only
        assert session.query(Restore).count() == 0

    accepted: list[tuple[str, int]] = []
    for tenant in TENANTS:
        for call in calls:
            inside = client.request(**call.request(tenant, key=KEY_OF[tenant]))
            assert inside.status_code not in (401, 403), (tenant, call, inside.text)
            assert inside.status_code < 500, (tenant, call, inside.text)
            accepted.append((str(call), inside.status_code))
    assert ("POST /athena/api/v1/ondemandbackup", 202) in accepted
    assert queued(broker) == {"backup": len(TENANTS)}
    with session_scope(fleet.settings.database_url) as session:
        namespaces = sorted(b.namespace for b in session.query(Backup) if b.timestamp != TS)
    assert namespaces == sorted(TENANTS)  # each tenant's backup in its own namespace


def test_restore_across_namespaces_reaches_the_broker_only_with_both(
    fleet: Fleet, broker: str
) -> None:
    client = TestClient(create_app(lambda: fleet, send_through_celery(broker)))
    body = {"timestamp": TS, "namespace": "app", "sourceNamespace": "team-b"}
    refused = client.post(
        f"{BASE}/ondemandrestore", json=body, headers={"Authorization": KEY_OF["app"]}
    )
    assert refused.status_code == 403
    assert queued(broker) == {}
    detail = client.get(
        f"{BASE}/backup/{TS}",
        params={"namespace": "team-b"},
        headers={"Authorization": KEY_OF["app"]},
    )
    assert detail.status_code == 403
    assert "team-b" not in detail.text
    both = {"Authorization": WITHOUT_ROLE["ingest"]}  # every namespace
    accepted = client.post(f"{BASE}/ondemandrestore", json=body, headers=both)
    assert accepted.status_code == 202, accepted.text
    assert queued(broker) == {"restore": 1}
    with session_scope(fleet.settings.database_url) as session:
        (restore,) = session.query(Restore)
        assert (restore.namespace, restore.source_namespace) == ("app", "team-b")


def cli_env(fleet: Fleet, tmp_path: Path, broker: str, **extra: str) -> dict[str, str]:
    config = tmp_path / "backfleet.toml"
    config.write_text(CONFIG)
    return {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "BROKER_URL": broker,
        "DATABASE_URL": fleet.settings.database_url,
        "BACKFLEET_CONFIG": str(config),
        "OBJECT_STORE_LOCATION_TYPE": "local",
        "OBJECT_STORE_LOCATION_LOCAL": str(fleet.settings.object_store_location_local),
        "BACKUP_SIGNING_KEY": SIGNING_KEY,  # the store-only manifest's MAC key
        **extra,
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_restores_from_an_unconfigured_namespace_only_when_allowed(
    fleet: Fleet, tmp_path: Path, broker: str
) -> None:
    env = cli_env(fleet, tmp_path, broker)
    for source in (UNCONFIGURED, "nothing-here"):
        refused = cli(env, "restore", TS, "--source-namespace", source)
        assert refused.returncode == 1, refused.stderr  # refused: exit 1
        assert refused.stderr.strip() == f"error: {UNCONFIGURED_SOURCE}"
    assert queued(broker) == {}

    flagged = cli(
        env, "restore", TS, "--source-namespace", UNCONFIGURED, "--allow-unconfigured-source"
    )
    assert flagged.returncode == 0, flagged.stderr
    assert f"restore of {UNCONFIGURED}/{TS} into app requested" in flagged.stdout
    assert queued(broker) == {"restore": 1}

    redis.Redis.from_url(broker).delete("restore")
    with session_scope(fleet.settings.database_url) as session:
        for restore in session.query(Restore):
            restore.status = "Success"  # done: the next one may start
    setting = cli_env(
        fleet, tmp_path, broker, BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES="true"
    )
    by_setting = cli(setting, "restore", TS, "--source-namespace", UNCONFIGURED)
    assert by_setting.returncode == 0, by_setting.stderr
    assert queued(broker) == {"restore": 1}
    # A configured source needs neither.
    redis.Redis.from_url(broker).delete("restore")
    with session_scope(fleet.settings.database_url) as session:
        for restore in session.query(Restore):
            restore.status = "Success"
    same = cli(env, "restore", TS, "--source-namespace", "team-b")
    assert same.returncode == 0, same.stderr
    with session_scope(fleet.settings.database_url) as session:
        sources = sorted(r.source_namespace for r in session.query(Restore))
    assert sources == sorted([UNCONFIGURED, UNCONFIGURED, "team-b"])
