"""tasks.backup.run_backup run in-process (eagerly) on a real Redis and a real catalog:
a busy namespace makes a scheduled run wait then skip, a request wait, and a job
whose worker keeps dying is failed past the delivery cap."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tasks.backup import run_backup
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import FAILED, SUCCESS, Backup, SkippedRun
from workers.fleet import reset_fleet
from workers.operations.locks import NamespaceLock, forget_clients

pytestmark = pytest.mark.integration


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
        "BACKUP_LOCK_TTL": "5",
        "SCHEDULED_BACKUP_WAIT": "10",
        "TASK_MAX_REDELIVERIES": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("BACKFLEET_NAMESPACE", raising=False)
    reset_fleet()
    forget_clients()
    yield url
    reset_fleet()
    dispose_engines()


def held_lock(redis_url: str) -> NamespaceLock:
    lock = NamespaceLock(redis.Redis.from_url(redis_url), "app", label="restore of x", ttl=30)
    lock.acquire()
    return lock


def test_a_scheduled_backup_of_a_busy_namespace_waits_then_is_skipped_and_recorded(
    catalog: str, redis_server: Any
) -> None:
    lock = held_lock(redis_server.url)
    try:
        run_backup.apply(kwargs={"namespace": "app", "schedule": "regular-backup-app"})
    finally:
        lock.release()
    with session_scope(catalog) as session:
        assert session.query(Backup).count() == 0
        (skipped,) = session.query(SkippedRun).all()
        assert skipped.namespace == "app" and skipped.schedule == "regular-backup-app"
        assert "busy with restore of x" in skipped.reason

    run_backup.apply(kwargs={"namespace": "app"})  # free now: it runs
    with session_scope(catalog) as session:
        (backup,) = session.query(Backup).all()
        assert backup.status == SUCCESS and backup.trigger == "schedule"
        assert backup.attempts == 1


def test_a_requested_backup_runs_once_the_namespace_is_free(
    catalog: str, redis_server: Any
) -> None:
    with session_scope(catalog) as session:
        row = queries.create_backup(
            session, namespace="app", services=["graph"], only_config=False, trigger="api"
        )
        timestamp = row.timestamp
    run_backup.apply(kwargs={"namespace": "app", "timestamp": timestamp})
    with session_scope(catalog) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None and backup.status == SUCCESS


def test_a_backup_whose_worker_keeps_dying_is_failed_past_the_cap(catalog: str) -> None:
    with session_scope(catalog) as session:
        row = queries.create_backup(
            session, namespace="app", services=["graph"], only_config=False, trigger="api"
        )
        row.status, row.attempts = "Running", 3  # three deliveries started and were lost
        timestamp = row.timestamp
    run_backup.apply(kwargs={"namespace": "app", "timestamp": timestamp})
    with session_scope(catalog) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None and backup.status == FAILED
        assert backup.error is not None and "TASK_MAX_REDELIVERIES=2" in backup.error
        assert backup.attempts == 4


def test_a_redelivered_finished_backup_records_no_second_audit_event(
    catalog: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.catalog.models import UserEvent

    monkeypatch.setenv("ENABLE_USER_EVENTS", "true")
    reset_fleet()
    with session_scope(catalog) as session:
        row = queries.create_backup(
            session, namespace="app", services=["graph"], only_config=False, trigger="api"
        )
        timestamp = row.timestamp
    for _ in range(2):  # the second is a redelivery of finished work
        run_backup.apply(kwargs={"namespace": "app", "timestamp": timestamp})
    with session_scope(catalog) as session:
        events = session.query(UserEvent).filter_by(namespace="app").all()
        assert [e.name_hints for e in events] == [["Backup"]]
