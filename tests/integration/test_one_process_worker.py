"""The one-process backup worker (`--pool threads --concurrency 1`) keeps the prefork
worker's time limits, with real processes, a real Redis and the S3 server:

- the soft limit stops a backup at once, aborts its upload and fails its row with the
  reason, as in a prefork child (parametrised over both pools), a waiting `pre` hook
  included;
- the worker answers the healthcheck's ping while it backs up;
- the hard limit, reached by a backup whose store stopped answering (the soft limit's
  cleanup then waits on it), ends the task as the prefork pool ends it (failed,
  acknowledged, so not delivered again; the reconciler settles its row), and the
  one-process worker exits with status 70 for its supervisor to restart it, where
  prefork only replaces its child.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis

from tests.fleet_processes import stop, wait_for
from tests.integration.test_fleet_faults import make_rig
from tests.integration.test_resume_after_kill import store_env
from tests.tcpgate import TcpGate
from workers.catalog.models import FAILED, RUNNING
from workers.settings import Settings
from workers.stores import make_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HARD_LIMIT_EXIT = 70


def seconds_taken(backup: Any) -> float:
    assert backup.started_at is not None and backup.finished_at is not None
    return float((backup.finished_at - backup.started_at).total_seconds())


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_soft_time_limit_aborts_the_upload_and_records_the_failure(
    tmp_path: Path, request: pytest.FixtureRequest, pool: str
) -> None:
    limits = {"BACKUP_SOFT_TIME_LIMIT": "5", "BACKUP_TIME_LIMIT": "20"}
    store = store_env("s3", request)
    with make_rig(tmp_path, store, f"sqlite:///{tmp_path}/catalog.db", limits) as rig:
        worker = rig.fleet.worker("worker", pool=pool)
        assert rig.fleet.cli("backup").returncode == 0  # ~8 s of upload: past the soft limit
        wait_for(lambda: rig.finished() is not None, seconds=90, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == FAILED
        assert backup.error == "files: stopped by BACKUP_SOFT_TIME_LIMIT (5 s)"
        with mock.patch.dict(os.environ, rig.env, clear=True):
            leftover = list(make_store(Settings()).list_uploads("app/"))
        assert leftover == []  # the open multipart upload was aborted on the way out
        assert worker.poll() is None  # the worker goes on to its next task
        assert "Soft time limit (5s) exceeded" in rig.fleet.log_of("worker")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_soft_time_limit_stops_a_waiting_pre_hook_at_once(
    tmp_path: Path, request: pytest.FixtureRequest, pool: str
) -> None:
    """The backup's thread waits for `pre` to end: the soft limit lands there all the same
    (a signal in a prefork child; in a threads worker, between two slices of the wait)."""
    limits = {"BACKUP_SOFT_TIME_LIMIT": "5", "BACKUP_TIME_LIMIT": "25"}
    store = store_env("s3", request)
    with make_rig(tmp_path, store, f"sqlite:///{tmp_path}/catalog.db", limits) as rig:
        config = Path(rig.env["BACKFLEET_CONFIG"])
        hooks = '[services.files.hooks]\npre = ["sleep", "50"]\ntimeout = "10m"\n'
        config.write_text(config.read_text() + hooks)
        worker = rig.fleet.worker("worker", pool=pool)
        assert rig.fleet.cli("backup").returncode == 0
        wait_for(lambda: rig.finished() is not None, seconds=90, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == FAILED
        assert backup.error == "files: stopped by BACKUP_SOFT_TIME_LIMIT (5 s)"
        assert seconds_taken(backup) < 15  # not the hook's 50 s, nor the hard limit's 25
        assert worker.poll() is None


@pytest.mark.timeout(180)
def test_a_threads_worker_answers_the_healthcheck_while_it_backs_up(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The liveness probe pings the worker: its main thread answers while a task thread
    runs the backup (the solo pool would not)."""
    store = store_env("s3", request)
    with make_rig(tmp_path, store, f"sqlite:///{tmp_path}/catalog.db") as rig:
        rig.fleet.worker("worker", pool="threads")
        node = f"worker-{os.getpid()}@{socket.gethostname()}"  # fleet_processes' -n
        assert rig.fleet.cli("backup").returncode == 0  # ~8 s of upload (3 MiB/s)
        wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
        probe = subprocess.run(
            [sys.executable, "-m", "workers.cli.healthcheck", "worker", "-n", node],
            env=rig.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
        assert rig.finished() is None  # it answered during the backup
        wait_for(lambda: rig.finished() is not None, seconds=90, what="the backup ending")
        (backup,) = rig.backups()
        assert backup.status == "Success", backup.error


def unacknowledged(url: str) -> int:
    """Messages Redis holds for workers that took them and have not acknowledged them."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.hlen("unacked")) + int(client.llen("backup"))
    finally:
        client.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_hard_time_limit_ends_the_task_as_prefork_does_and_exits_a_threads_worker(
    tmp_path: Path, request: pytest.FixtureRequest, pool: str
) -> None:
    limits = {
        "BACKUP_SOFT_TIME_LIMIT": "5",
        "BACKUP_TIME_LIMIT": "12",
        "BACKUP_MAX_BANDWIDTH": "2MiB",
    }
    store = store_env("s3", request)
    upstream = store["AWS_S3_ENDPOINT_URL"].removeprefix("http://")
    host, port = upstream.rsplit(":", 1)
    with TcpGate((host, int(port))) as gate:
        store["AWS_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{gate.port}"
        with make_rig(tmp_path, store, f"sqlite:///{tmp_path}/catalog.db", limits) as rig:
            worker = rig.fleet.worker("worker", pool=pool)
            assert rig.fleet.cli("backup").returncode == 0
            wait_for(lambda: rig.parts_recorded() >= 1, seconds=60, what="a part uploaded")
            gate.hang(120)  # the store stops answering: parts wait on it for 60 s each
            started = time.monotonic()
            wait_for(
                lambda: "Hard time limit (12s) exceeded" in rig.fleet.log_of("worker"),
                seconds=60,
                what="the hard time limit",
            )
            log = rig.fleet.log_of("worker")
            assert "Soft time limit (5s) exceeded" in log
            if pool == "threads":
                assert worker.wait(30) == HARD_LIMIT_EXIT
                assert f"the worker exits (status {HARD_LIMIT_EXIT})" in log
            else:
                time.sleep(2)
                assert worker.poll() is None  # the prefork parent replaced its child
            assert time.monotonic() - started < 30
            # Acknowledged, as Celery acknowledges a task past its hard limit: the backup
            # is not delivered again; the reconciler settles its row (docs/fleet.md).
            assert unacknowledged(rig.env["BROKER_URL"]) == 0
            (backup,) = rig.backups()
            assert backup.status == RUNNING and backup.attempts == 1
            stop(worker, signal.SIGKILL)
            gate.hang(0)
            time.sleep(6)  # BACKUP_LOCK_TTL: the dead task's namespace lock expires
            done = rig.fleet.cli("reconcile", "--json", timeout=120)
            assert done.returncode == 0, done.stderr
            (outcome,) = json.loads(done.stdout)
            assert outcome["status"] == FAILED and outcome["was"] == RUNNING
            (backup,) = rig.backups()
            assert backup.status == FAILED and backup.attempts == 1
