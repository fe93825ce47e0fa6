"""Retention never takes the last copy: a real PostgreSQL catalog, real backups in a real
(local) store, and the locks in a real Redis.

- a policy that keeps nothing is refused, at start and per namespace;
- under an aggressive policy the newest backup of every service survives, verified or not
  (a service backed up on a slower schedule than the others included);
- a backup that a Pending restore (or a test restore) is about to read survives, and the
  restore then runs; a restore waits while retention deletes in its source namespace.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

import tasks.restore
from tests.health_fleet import make_fleet
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, PENDING, SUCCESS, Backup, Restore
from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.operations.backup import run_backup
from workers.operations.jobs import request_restore
from workers.operations.locks import reading_mark, retention_lock
from workers.operations.restore import run_restore
from workers.operations.retention import apply_retention
from workers.repository.manifest import manifest_key
from workers.services_config import RetentionSpec
from workers.settings import Settings, load_settings

pytestmark = [pytest.mark.integration]
AGGRESSIVE = {  # keep the newest hourly backup, nothing else
    "retention_keep_hourly": 1,
    "retention_keep_daily": 0,
    "retention_keep_weekly": 0,
    "retention_keep_monthly": 0,
    "retention_keep_yearly": 0,
}
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _locks(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", redis_server.url)
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)
    yield
    dispose_engines()


def backup_of(fleet: Fleet, services: list[str], hour: int) -> str:
    """A real backup of some services of `app`, stamped START + `hour` hours."""
    with session_scope(fleet.settings.database_url) as session:
        stamp = queries.create_backup(
            session,
            namespace="app",
            services=services,
            only_config=False,
            trigger="test",
            moment=START + timedelta(hours=hour),
        ).timestamp
    outcome = run_backup(fleet, namespace="app", timestamp=stamp)
    assert outcome.status == SUCCESS, outcome.error
    return stamp


def in_catalog(fleet: Fleet) -> set[str]:
    with session_scope(fleet.settings.database_url) as session:
        return set(session.scalars(select(Backup.timestamp).where(Backup.namespace == "app")))


def in_store(fleet: Fleet, stamp: str) -> bool:
    return fleet.store.exists(manifest_key("app", stamp))


@pytest.mark.timeout(60)
def test_a_policy_that_keeps_nothing_is_refused(tmp_path: Path, pg_database: str) -> None:
    zero = {name: 0 for name in AGGRESSIVE}
    with pytest.raises(ValidationError, match=r"RETENTION_KEEP_HOURLY, .* are all 0"):
        Settings(**zero)
    # At start: every process loads its settings first and stops on this one.
    env = {**os.environ, **{name.upper(): "0" for name in zero}, "DATABASE_URL": pg_database}
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "retention"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "RETENTION_KEEP_YEARLY are all 0" in done.stderr
    # A services-file [retention] table that turns the last rule off is refused too,
    # before anything is deleted.
    fleet = make_fleet(tmp_path, database_url=pg_database, **AGGRESSIVE)
    stamps = [backup_of(fleet, ["db", "files"], hour) for hour in range(3)]
    zeroed = replace(
        fleet.config, retention={"app": RetentionSpec.model_validate({"keep-hourly": 0})}
    )
    with pytest.raises(ConfigError, match="retention of namespace app keeps nothing"):
        apply_retention(replace(fleet, config=zeroed))
    assert in_catalog(fleet) == set(stamps)
    assert load_settings().retention_keep_hourly == 24  # the defaults keep plenty


@pytest.mark.timeout(120)
def test_the_newest_backup_of_every_service_survives_an_aggressive_policy(
    tmp_path: Path, pg_database: str
) -> None:
    fleet = make_fleet(tmp_path, database_url=pg_database, **AGGRESSIVE)
    # `files` is backed up daily, `db` hourly: the newest hourly backup holds only `db`.
    files = backup_of(fleet, ["files"], 0)
    both = backup_of(fleet, ["db", "files"], 1)  # older than `files_only`
    files_only = backup_of(fleet, ["files"], 2)
    dbs = [backup_of(fleet, ["db"], hour) for hour in (3, 4, 5)]
    # Nothing is verified: the old code protected only the newest verified-good backup.
    (plan,) = apply_retention(fleet)
    assert plan.keep[files_only] == ["newest backup of service files"]
    assert "newest backup of service db" in plan.keep[dbs[-1]]
    assert set(plan.delete) == {files, both, dbs[0], dbs[1]}
    assert in_catalog(fleet) == {files_only, dbs[-1]}
    assert in_store(fleet, files_only) and in_store(fleet, dbs[-1])
    assert not in_store(fleet, files) and not in_store(fleet, dbs[0])
    # Run again: nothing more goes, the last copy of each service stays.
    (again,) = apply_retention(fleet)
    assert again.delete == {} and in_catalog(fleet) == {files_only, dbs[-1]}


@pytest.mark.timeout(120)
def test_a_backup_a_pending_restore_will_read_is_kept_and_then_restored(
    tmp_path: Path, pg_database: str
) -> None:
    fleet = make_fleet(tmp_path, database_url=pg_database, **AGGRESSIVE)
    stamps = [backup_of(fleet, ["db", "files"], hour) for hour in range(4)]
    restore = request_restore(
        fleet, namespace="app", timestamp=stamps[1], enqueue=lambda *_: "queued-task"
    )
    (plan,) = apply_retention(fleet)
    assert plan.keep[stamps[1]] == [f"read by restore {restore.id} ({PENDING})"]
    assert set(plan.delete) == {stamps[0], stamps[2]}
    assert in_store(fleet, stamps[1]) and stamps[1] in in_catalog(fleet)
    # The worker then gets to it: the backup is whole.
    (tmp_path / "data" / "files" / "a.txt").write_text("changed\n")
    assert run_restore(fleet, restore_id=restore.id) == SUCCESS
    assert (tmp_path / "data" / "files" / "a.txt").read_text() == "alpha\n"
    # Finished, it no longer holds the backup back.
    (plan,) = apply_retention(fleet)
    assert set(plan.delete) == {stamps[1]}


@pytest.mark.timeout(120)
def test_a_backup_a_test_restore_reads_is_kept(tmp_path: Path, pg_database: str) -> None:
    fleet = make_fleet(tmp_path, database_url=pg_database, **AGGRESSIVE)
    stamps = [backup_of(fleet, ["db", "files"], hour) for hour in range(3)]
    mark = reading_mark(fleet.settings, "app", stamps[0])
    mark.acquire()
    try:
        (plan,) = apply_retention(fleet)
    finally:
        mark.release()
    assert plan.keep[stamps[0]] == ["read by a test restore"]
    assert set(plan.delete) == {stamps[1]}


@pytest.mark.timeout(120)
def test_a_restore_waits_while_retention_deletes_in_its_source_namespace(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short limits, so the restore's patience (retries x countdown) runs out within seconds.
    fleet = make_fleet(
        tmp_path,
        database_url=pg_database,
        backup_lock_ttl=5,
        backup_soft_time_limit=5,
        backup_time_limit=10,
        celery_visibility_timeout=40,
        scheduled_backup_wait=10,
        **AGGRESSIVE,
    )
    stamps = [backup_of(fleet, ["db", "files"], hour) for hour in range(2)]
    restore = request_restore(
        fleet, namespace="app", timestamp=stamps[0], enqueue=lambda *_: "queued-task"
    )
    monkeypatch.setattr(tasks.restore, "current_fleet", lambda: fleet)
    retention = retention_lock(fleet.settings, "app", label="retention")
    retention.acquire()  # a pass is deleting in the namespace the backup lives in
    try:
        result = tasks.restore.run_restore.apply(kwargs={"restore_id": restore.id}).get()
    finally:
        retention.release()
    assert result["status"] == FAILED
    with session_scope(fleet.settings.database_url) as session:
        row = session.get(Restore, restore.id)
        assert row is not None and row.attempts == 0  # it never started reading
        assert row.error == "the namespace stayed busy: namespace app is busy with retention"
    assert in_store(fleet, stamps[0])
