"""Stuck rows resolve themselves: the reconciler against real workers, PostgreSQL, Redis and
an S3 server.

- a catalog outage at the end of a backup (its manifest stored, its last write lost) leaves
  the row Running and the namespace answering 409; the reconciler settles it as Success
  from the store, and the next backup is accepted;
- a worker killed mid-restore whose task the broker then lost: the reconciler leaves it
  while the task is still to be delivered again, then settles it as Failed;
- a backup that truly runs (its lock held) is left alone and ends by itself;
- Pending rows: settled when their task is in no queue, left while it is.
"""

import contextlib
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from sqlalchemy import select, update

from tasks.app import app
from tests.fleet_processes import stop, wait_for
from tests.health_fleet import make_fleet
from tests.integration.test_fleet_faults import make_rig, stored_bytes_match
from tests.integration.test_resume_after_kill import store_env
from tests.tcpgate import TcpGate
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, PENDING, RUNNING, SUCCESS, Backup, Restore
from workers.operations.locks import PREFIX
from workers.operations.reconcile import reconcile
from workers.timestamps import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The trigger only widens the moment between the manifest upload and the backup's last
# write to a few seconds, so the test can cut the catalog right then; the fault is the cut.
SLOW_FINISH = """
CREATE FUNCTION backfleet_test_slow_finish() RETURNS trigger AS $$
BEGIN
  IF NEW.status <> OLD.status AND NEW.status IN ('Success', 'Failed') THEN
    PERFORM pg_sleep(4);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER backfleet_test_slow_finish BEFORE UPDATE ON backups
  FOR EACH ROW EXECUTE FUNCTION backfleet_test_slow_finish();
"""


def rows(url: str, model: type[Backup] | type[Restore]) -> list[Any]:
    with session_scope(url) as session:
        return list(session.scalars(select(model).order_by(model.id)).all())


def reconciled(cli: Any) -> list[dict[str, Any]]:
    done = cli("reconcile", "--json")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.timeout(300)
def test_a_backup_whose_last_write_met_a_catalog_outage_is_settled_and_unblocks(
    tmp_path: Path, request: pytest.FixtureRequest, postgres_server: Any
) -> None:
    name = f"reconcile_{os.getpid()}_{int(time.time())}"
    direct = postgres_server.create_database(name)
    host_port = direct.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1) if ":" in host_port else (host_port, "5432")
    extra = {"CATALOG_RETRY_SECONDS": "5", "BACKUP_MAX_BANDWIDTH": "0"}
    try:
        with TcpGate((host, int(port))) as gate:
            gated = direct.replace(host_port, f"127.0.0.1:{gate.port}", 1)
            with make_rig(tmp_path, store_env("s3", request), gated, extra) as rig:
                with psycopg.connect(direct, autocommit=True) as conn:
                    conn.execute(SLOW_FINISH)
                rig.fleet.worker("worker")
                assert rig.fleet.cli("backup").returncode == 0
                wait_for(
                    lambda: _manifest_stored(rig), seconds=90, what="the manifest stored", every=0.1
                )
                gate.outage(20)  # longer than CATALOG_RETRY_SECONDS: the last write is lost
                (stuck,) = rows(direct, Backup)
                wait_for(
                    lambda: (
                        "recording the backup's result" in rig.fleet.log_of("worker")
                        and "raised unexpected" in rig.fleet.log_of("worker")
                    ),
                    seconds=60,
                    what="the task giving up on the catalog",
                )
                with psycopg.connect(direct, autocommit=True) as conn:
                    conn.execute("DROP TRIGGER backfleet_test_slow_finish ON backups")
                wait_for(lambda: not gate.is_down, seconds=30, what="the catalog back")
                (row,) = rows(direct, Backup)
                assert row.status == RUNNING and row.timestamp == stuck.timestamp
                blocked = rig.fleet.cli("backup")
                assert blocked.returncode == 1 and "is Running" in blocked.stderr  # the 409

                (outcome,) = reconciled(rig.fleet.cli)
                assert outcome["status"] == SUCCESS and outcome["was"] == RUNNING
                assert "manifest is complete" in outcome["reason"]
                (row,) = rows(direct, Backup)
                assert row.status == SUCCESS and row.error is None and row.size
                with session_scope(direct) as session:
                    backup = session.get(Backup, row.id)
                    assert backup is not None
                    assert all(a.status == SUCCESS and a.sha256 for a in backup.artifacts)
                    assert backup.manifest_sha256 is not None
                stored_bytes_match(rig, "app", row.timestamp)

                # The namespace is free again: a new backup is accepted and runs.
                accepted = rig.fleet.cli("backup", "--wait", timeout=120)
                assert accepted.returncode == 0, accepted.stderr
                assert [r.status for r in rows(direct, Backup)] == [SUCCESS, SUCCESS]
    finally:
        dispose_engines()
        postgres_server.drop_database(name)


def _manifest_stored(rig: Any) -> bool:
    from unittest import mock

    from workers.settings import Settings
    from workers.stores import make_store

    with mock.patch.dict(os.environ, rig.env, clear=True):
        store = make_store(Settings())
    return any(i.key.endswith("/manifest.json") for i in store.list("app/"))


@pytest.mark.timeout(240)
def test_a_killed_workers_restore_is_left_to_redelivery_then_settled_when_its_task_is_lost(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    marker = tmp_path / "restoring.pid"
    config = tmp_path / "slow.toml"
    config.write_text(
        'namespace = "app"\n[services.slow]\nkind = "command"\n'
        'dump_command = ["sh", "-c", "head -c 100000 /dev/urandom"]\n'
        f'restore_command = ["sh", "-c", "echo $$ > {marker}; sleep 60; cat > /dev/null"]\n'
    )
    extra = {"BACKFLEET_CONFIG": str(config), "BACKUP_MAX_BANDWIDTH": "0"}
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    with make_rig(tmp_path, store_env("s3", request), catalog, extra) as rig:
        worker = rig.fleet.worker("worker")
        done = rig.fleet.cli("backup", "--wait", timeout=120)
        assert done.returncode == 0, done.stderr
        (backup,) = rows(catalog, Backup)
        assert rig.fleet.cli("restore", backup.timestamp).returncode == 0
        wait_for(
            lambda: marker.exists() and marker.read_text().strip() != "",
            seconds=60,
            what="the restore command running",
        )
        try:
            stop(worker, signal.SIGKILL)  # the whole pod
        finally:
            with contextlib.suppress(ProcessLookupError):  # the tool it left behind
                os.killpg(int(marker.read_text()), signal.SIGKILL)
        client = redis.Redis.from_url(rig.redis.url)
        wait_for(lambda: not client.exists(PREFIX + "app"), seconds=30, what="the lock expiring")

        # Its message is unacknowledged: Redis would hand it to a worker again.
        (left,) = reconciled(rig.fleet.cli)
        assert left["status"] == "left" and "in the broker" in left["reason"]
        assert rows(catalog, Restore)[0].status == RUNNING

        client.flushall()  # the broker loses it, as a Redis without persistence does
        (settled,) = reconciled(rig.fleet.cli)
        assert settled["status"] == FAILED and settled["kind"] == "restore"
        (restore,) = rows(catalog, Restore)
        assert restore.status == FAILED and restore.finished_at is not None
        assert restore.error is not None and "the worker running it was lost" in restore.error
        # Nothing is left blocking the namespace.
        rig.fleet.worker("second")
        again = rig.fleet.cli("backup", "--wait", timeout=120)
        assert again.returncode == 0, again.stderr


@pytest.mark.timeout(180)
def test_a_backup_that_truly_runs_is_left_alone(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    with make_rig(tmp_path, store_env("s3", request), catalog) as rig:
        rig.fleet.worker("worker")
        assert rig.fleet.cli("backup").returncode == 0
        wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
        (left,) = reconciled(rig.fleet.cli)
        assert left["status"] == "left" and "namespace lock is held" in left["reason"]
        wait_for(lambda: rig.finished() is not None, seconds=120, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == SUCCESS and backup.attempts == 1, backup.error


@pytest.mark.timeout(60)
def test_pending_rows_are_settled_only_when_no_queue_holds_their_task(
    tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis.Redis.from_url(redis_server.url).flushdb()
    monkeypatch.setenv("BROKER_URL", redis_server.url)
    fleet = make_fleet(tmp_path)
    old = utcnow() - timedelta(minutes=10)
    with session_scope(fleet.settings.database_url) as session:
        for namespace in ("queued", "lost"):
            queries.create_backup(
                session,
                namespace=namespace,
                services=["db"],
                only_config=False,
                trigger="api",
                moment=old,
            )
        session.execute(update(Backup).values(created_at=old))
        stamps = {b.namespace: b.timestamp for b in session.scalars(select(Backup))}
    # A real message on the backup queue for one of them, with no task id on its row.
    with app.connection_for_write(redis_server.url) as connection:
        for declared in app.amqp.queues.values():  # as a worker consuming them would
            declared.bind(connection.default_channel).declare()
        kwargs = {"namespace": "queued", "timestamp": stamps["queued"]}
        app.send_task("tasks.backup.run_backup", kwargs=kwargs, connection=connection)
    dry = reconcile(fleet, dry_run=True)
    assert {(o.namespace, o.status) for o in dry} == {("queued", "left"), ("lost", FAILED)}
    assert {b.status for b in rows(fleet.settings.database_url, Backup)} == {PENDING}
    outcomes = reconcile(fleet, confirm_after=0.1)
    by_namespace = {o.namespace: o for o in outcomes}
    assert "in the broker" in by_namespace["queued"].reason
    assert by_namespace["lost"].status == FAILED
    statuses = {b.namespace: b.status for b in rows(fleet.settings.database_url, Backup)}
    assert statuses == {"queued": PENDING, "lost": FAILED}
    # A Pending row younger than the grace period is left: the API may be sending its task.
    with session_scope(fleet.settings.database_url) as session:
        queries.create_backup(
            session, namespace="fresh", services=["db"], only_config=False, trigger="api"
        )
    (fresh,) = [o for o in reconcile(fleet, confirm_after=0.1) if o.namespace == "fresh"]
    assert fresh.status == "left" and fresh.reason == "requested too recently"


@pytest.mark.timeout(60)
def test_a_dead_restore_left_half_swapped_is_put_back_before_it_is_settled(
    tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis.Redis.from_url(redis_server.url).flushdb()
    monkeypatch.setenv("BROKER_URL", redis_server.url)
    fleet = make_fleet(tmp_path)
    target = tmp_path / "data" / "files"
    # What a worker killed between the two renames of a swap leaves: the old tree
    # renamed aside, the target missing, a staging copy beside them.
    aside = tmp_path / "data" / ".files.backfleet-old-0123abcd"
    target.rename(aside)
    (tmp_path / "data" / ".files.backfleet-restore-4567cdef").mkdir()
    with session_scope(fleet.settings.database_url) as session:
        restore = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp="2026-01-01t00-00-00",
            services=["files"],
            skipped=[],
            backup_url="file:///nowhere/",
        )
        restore.status, restore.attempts = RUNNING, 1
    (settled,) = reconcile(fleet, confirm_after=0.1)
    assert settled.kind == "restore" and settled.status == FAILED, settled
    assert (target / "a.txt").read_text() == "alpha\n"  # the old data, back in place
    assert sorted(os.listdir(tmp_path / "data")) == ["app.db", "files"]
    (row,) = rows(fleet.settings.database_url, Restore)
    assert row.status == FAILED and row.error is not None
