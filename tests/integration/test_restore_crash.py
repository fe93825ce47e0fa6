"""A worker killed mid-restore (SIGKILL) at its dangerous points: old data or new, never neither.

A real process runs the restore task and stops itself at a chosen point
(tests/restore_crash_child.py); the test SIGKILLs it there. The target must
then hold the data from before the restore or the restored data, and the task
delivered again must put right what the dead attempt left, restore, and leave
no staging copy. The namespace lock the dead worker held expires on its own
(BACKUP_LOCK_TTL=3), as it would in a fleet.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tasks.restore import run_restore
from tests.fleet_processes import FleetProcesses, wait_for
from tests.restore_fleet import (
    RestoreCase,
    leftovers,
    make_case,
    new_restore,
    pg_rows,
    restore_events,
    sqlite_rows,
    tree,
)
from tests.servers import RedisServer, started
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, SUCCESS, Restore
from workers.fleet import reset_fleet
from workers.operations.locks import PREFIX

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
LOCK = PREFIX + "app"


@pytest.fixture
def case(
    tmp_path: Path, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RestoreCase]:
    made = make_case(tmp_path, redis_server.url, monkeypatch)
    yield made
    made.redis.delete(LOCK)
    made.redis.close()
    reset_fleet()
    dispose_engines()


@pytest.fixture
def pg_case(
    tmp_path: Path, redis_server: Any, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RestoreCase]:
    made = make_case(tmp_path, redis_server.url, monkeypatch, postgres=pg_database)
    yield made
    made.redis.delete(LOCK)
    made.redis.close()
    reset_fleet()
    dispose_engines()


def kill_at(
    case: RestoreCase,
    restore_id: int,
    point: str,
    tmp_path: Path,
    ready: Callable[[], bool] = lambda: True,
) -> None:
    """Run the restore task in a child process and SIGKILL it at `point` (once `ready`)."""
    marker = tmp_path / f"reached-{point}"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.restore_crash_child", str(restore_id), point, str(marker)],
        env={**os.environ, **case.env},
    )
    try:
        wait_for(
            lambda: marker.exists() or child.poll() is not None,
            seconds=60,
            what=f"reaching {point}",
        )
        assert marker.exists(), f"the restore ended (exit {child.returncode}) before {point}"
        wait_for(lambda: _stopped(child.pid), seconds=10, what="the child stopping itself")
        wait_for(ready, seconds=30, what=f"the state expected at {point}")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_celery_worker_killed_between_the_renames_is_redelivered_and_ends_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's own redelivery: a pool process SIGKILLed at the dangerous point of the
    two-rename swap; the worker hands the task back, the lock expires, the next delivery
    puts the old tree back, restores, and cleans up."""
    redis_server = started(RedisServer())
    fleet: FleetProcesses | None = None
    case = make_case(tmp_path, redis_server.url, monkeypatch)
    try:
        times = {
            "CELERY_VISIBILITY_TIMEOUT": "30",
            "BACKUP_SOFT_TIME_LIMIT": "22",
            "BACKUP_TIME_LIMIT": "26",
            "SCHEDULED_BACKUP_WAIT": "10",
        }
        env = {**os.environ, **case.env, **times}
        fleet = FleetProcesses(env, tmp_path / "logs")
        marker = tmp_path / "reached"
        fleet.start(
            "worker",
            [
                sys.executable,
                "-m",
                "tests.restore_crash_child",
                "--worker",
                "directory-renames",
                str(marker),
                "-A",
                "workers.app",
                "worker",
                "-Q",
                "restore",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
                "-n",
                f"restore-crash-{os.getpid()}@%h",
            ],
        )
        restore_id = new_restore(case, ["files"])
        send = (
            "from tasks.app import app; "
            f"app.send_task('tasks.restore.run_restore', kwargs={{'restore_id': {restore_id}}})"
        )
        subprocess.run([sys.executable, "-c", send], env=env, check=True, timeout=60)

        wait_for(marker.exists, seconds=90, what="the restore reaching the swap")
        pool_process = int(marker.read_text())
        wait_for(lambda: _stopped(pool_process), seconds=10, what="the pool process stopping")
        assert not case.files.exists()  # between the renames
        os.kill(pool_process, signal.SIGKILL)

        def finished() -> bool:
            return restore_row(case, restore_id).status in (SUCCESS, FAILED)

        wait_for(finished, seconds=90, what="the redelivered restore finishing")
        row = restore_row(case, restore_id)
        assert (row.status, row.error, row.attempts) == (SUCCESS, None, 2)
        assert tree(case.files) == case.backed_up
        assert leftovers(case) == []
        assert len(restore_events(case)) == 1
    finally:
        if fleet is not None:
            fleet.close()
        case.redis.close()
        redis_server.close()
        reset_fleet()
        dispose_engines()


def redeliver(case: RestoreCase, restore_id: int) -> dict[str, Any]:
    """The task again, once the dead worker's lock expired (as the broker would redeliver it)."""
    wait_for(
        lambda: case.redis.get(LOCK) is None, seconds=15, what="the dead worker's lock expiring"
    )
    reset_fleet()
    result: dict[str, Any] = run_restore.apply(kwargs={"restore_id": restore_id}).get()
    return result


def restore_row(case: RestoreCase, restore_id: int) -> Restore:
    with session_scope(case.catalog) as session:
        row = session.get(Restore, restore_id)
        assert row is not None
        session.expunge(row)
        return row


def test_killed_after_the_exchange_the_target_is_new_and_redelivery_cleans_up(
    case: RestoreCase, tmp_path: Path
) -> None:
    restore_id = new_restore(case, ["files"])
    kill_at(case, restore_id, "directory-exchange", tmp_path)
    assert tree(case.files) == case.backed_up  # swapped in one step: already the restored tree
    assert len(leftovers(case)) == 1  # the previous tree, under the staging name

    assert redeliver(case, restore_id)["status"] == SUCCESS
    assert tree(case.files) == case.backed_up
    assert leftovers(case) == []
    assert restore_row(case, restore_id).attempts == 2
    assert len(restore_events(case)) == 1


def test_killed_between_the_two_renames_the_old_tree_comes_back(
    case: RestoreCase, tmp_path: Path
) -> None:
    """The fallback where renameat2 cannot exchange: the target is missing at the kill."""
    restore_id = new_restore(case, ["files"])
    kill_at(case, restore_id, "directory-renames", tmp_path)
    assert not case.files.exists()  # the dangerous point was reached
    assert len(leftovers(case)) == 2  # the old tree set aside, the verified staging copy

    # The redelivery fails (its backup is gone from the store): the old tree is back anyway.
    store = Path(case.env["OBJECT_STORE_LOCATION_LOCAL"])
    (artifact,) = store.rglob("files*.tar*")
    hidden = tmp_path / "hidden-artifact"
    artifact.rename(hidden)
    outcome = redeliver(case, restore_id)
    assert outcome["status"] == FAILED
    assert tree(case.files) == case.changed  # the data from before the restore
    assert leftovers(case) == []
    hidden.rename(artifact)

    again = new_restore(case, ["files"])  # and a restore after it works as ever
    assert run_restore.apply(kwargs={"restore_id": again}).get()["status"] == SUCCESS
    assert tree(case.files) == case.backed_up
    assert leftovers(case) == []


@pytest.mark.parametrize("point", ["sqlite-staged", "sqlite-copy"])
def test_a_killed_sqlite_restore_leaves_the_old_database_and_redelivery_restores(
    case: RestoreCase, tmp_path: Path, point: str
) -> None:
    before = sqlite_rows(case.database)
    restore_id = new_restore(case, ["db"])
    kill_at(case, restore_id, point, tmp_path)
    assert any(".backfleet-restore-" in name for name in leftovers(case))  # the staged copy
    journal = case.database.with_name(case.database.name + "-journal")
    assert journal.exists() == (point == "sqlite-copy")  # killed inside the write transaction
    assert sqlite_rows(case.database) == before == 1000  # rolled back: the old rows, whole

    assert redeliver(case, restore_id)["status"] == SUCCESS
    assert sqlite_rows(case.database) == 3000
    assert leftovers(case) == []


def test_a_killed_postgres_restore_rolls_back_and_redelivery_restores(
    pg_case: RestoreCase, tmp_path: Path
) -> None:
    case = pg_case
    assert case.postgres is not None
    restore_id = new_restore(case, ["pg"])
    url = case.postgres

    def in_transaction() -> bool:  # psql ran what it was fed, and waits inside the transaction
        return _other_sessions(url, "AND state = 'idle in transaction'") == 1

    kill_at(case, restore_id, "postgres-transaction", tmp_path, ready=in_transaction)
    # The dead worker's psql and pg_restore see their input end and quit; the server rolls
    # the open transaction (schemas dropped, rows half loaded) back.
    wait_for(lambda: _other_sessions(url) == 0, seconds=30, what="psql quitting")
    assert pg_rows(url) == 100

    assert redeliver(case, restore_id)["status"] == SUCCESS
    assert pg_rows(url) == 500
    assert leftovers(case) == []


def _other_sessions(url: str, where: str = "") -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() " + where  # type: ignore[operator]
        ).fetchone()
        assert row is not None
        return int(row[0])
