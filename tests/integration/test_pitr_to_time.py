"""Restore to a moment against real servers: a private PostgreSQL cluster (1 MiB segments)
whose WAL a streamer ships while marker rows are committed, a base backup taken before,
a real Redis; restored into the live database through the API and the command line, on
the local store and an S3 server. Every marker committed at or before the target is
there afterwards, none after it."""

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.fleet_processes import FleetProcesses
from tests.pitr_moments import API_KEY, Moments, between, moments_fleet, present_through, seconds
from tests.plugins.wal import WAL_SETTINGS
from tests.servers import PrivatePostgres
from tests.wal_fleet import s3_env, wait_for
from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.models import RecoveryRun
from workers.catalog.wal import record_gap
from workers.cli import main
from workers.operations.restore import run_restore
from workers.sources.pg_server import server_programs
from workers.timestamps import format_moment, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
API = "/athena/api/v1"
AUTH = {"Authorization": API_KEY}


@pytest.fixture
def moments(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Moments]:
    with moments_fleet(tmp_path, redis_server, wal_postgres, monkeypatch) as fleet:
        yield fleet


def restore_row(moments: Moments, timestamp: str) -> Any:
    with session_scope(moments.wal.catalog) as session:
        return queries.latest_restore(session, timestamp=timestamp)


@pytest.mark.timeout(240)
def test_restore_to_a_moment_through_the_api_and_the_cli(moments: Moments, tmp_path: Path) -> None:
    queued: list[dict[str, object]] = []
    client = TestClient(
        create_app(moments.wal.fleet, lambda _name, kwargs, _queue: queued.append(kwargs) or "t")
    )
    with moments.wal.streaming():
        wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
        stamp = moments.base_backup()
        marks = moments.write_markers(16)
        window = moments.wait_shipped(marks[-1][1])
        assert window.bases[0].timestamp == stamp and window.earliest is not None

        # backup/latest: the window and the lag, beside the fields it always had.
        latest = client.get(
            f"{API}/backup/latest", params={"namespace": moments.namespace}, headers=AUTH
        )
        assert latest.status_code == 200, latest.text
        body = latest.json()
        assert body["timestamp"] == stamp and body["status"] == "Success"
        (pitr,) = body["pitr"]
        assert pitr["service"] == "db" and pitr["pitrWindow"] == "7d"
        assert pitr["earliest"] == format_moment(window.earliest)
        assert pitr["latest"] >= format_moment(marks[-1][1]) and pitr["streaming"] is True
        assert pitr["lagSeconds"] is not None and pitr["lagSeconds"] < 30
        # /metrics: the window's start and end, and the promised reach (7d).
        gauges = {
            sample.name: sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.labels == {"namespace": moments.namespace, "service": "db"}
        }
        start = gauges["backfleet_wal_window_start_timestamp_seconds"]
        assert start == pytest.approx(window.earliest.timestamp())
        assert gauges["backfleet_wal_window_end_timestamp_seconds"] >= start
        assert gauges["backfleet_wal_window_promised_seconds"] == 7 * 86400

        # Outside the window: a 422 naming it, nothing queued.
        for outside in (window.earliest - seconds(30), utcnow() + seconds(3600)):
            refused = client.post(
                f"{API}/ondemandrestore",
                headers=AUTH,
                json={"namespace": moments.namespace, "targetTime": format_moment(outside)},
            )
            assert refused.status_code == 422, refused.text
            message = refused.json()["message"]
            assert "outside the recoverable window of service db" in message
            assert f"earliest {format_moment(window.earliest)}, latest " in message
        assert queued == []

        # A moment between two markers: 202 with the base backup's timestamp.
        target = between(marks, 6)
        accepted = client.post(
            f"{API}/ondemandrestore",
            headers=AUTH,
            json={"namespace": moments.namespace, "targetTime": format_moment(target)},
        )
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"code": 202, "message": "Request Accepted", "timestamp": stamp}
        (job,) = queued
        status = client.get(
            f"{API}/restorestatus",
            params={"timestamp": stamp, "namespace": moments.namespace},
            headers=AUTH,
        )
        assert status.json()["targetTime"] == format_moment(target)
        assert status.json()["status"] == "Pending"

        moments.write_markers(3)  # written after the request: gone after the restore too
        assert run_restore(moments.wal.fleet(), restore_id=int(job["restore_id"])) == "Success"
        assert moments.markers() == present_through(marks, target) == list(range(1, 8))
        row = restore_row(moments, stamp)
        assert (row.status, row.error, row.message) == ("Success", None, None)
        assert row.target_time == target
        assert list(moments.scratch.iterdir()) == []

        # The command line, through a real worker: --to-time --wait --json.
        more = moments.write_markers(10)
        moments.wait_shipped(more[-1][1])
        processes = FleetProcesses(dict(moments.wal.env), tmp_path / "logs")
        try:
            processes.worker("restorer", queues="restore")
            second = between(more, 3)
            done = processes.cli(
                "restore",
                "--namespace",
                moments.namespace,
                "--to-time",
                format_moment(second),
                "--wait",
                "--json",
                timeout=180,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            assert answer["timestamp"] == stamp and answer["status"] == "Success"
            assert answer["targetTime"] == format_moment(second)
            # The first restore's state at the base, then the markers written after it.
            survivors = present_through(marks, target) + present_through(more, second)
            assert moments.markers() == survivors

            # backfleet status: the window and the lag, per pitr service.
            status_out = processes.cli("status", "--json")
            (entry,) = [
                n for n in json.loads(status_out.stdout) if n["namespace"] == moments.namespace
            ]
            (shown,) = entry["pitr"]
            assert shown["service"] == "db" and shown["earliest"] == format_moment(window.earliest)
            assert shown["latest"] >= format_moment(more[-1][1]) and "lagSeconds" in shown
            assert "pitr window " in processes.cli("status").stdout

            far = processes.cli(
                "restore", "--namespace", moments.namespace, "--to-time", "2000-01-01T00:00:00Z"
            )
            assert far.returncode == 2 and "outside the recoverable window" in far.stderr
        finally:
            processes.close()


@pytest.mark.timeout(180)
def test_a_gap_cuts_the_window_until_the_next_base_backup(moments: Moments) -> None:
    with moments.wal.streaming():
        wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
        moments.base_backup()
        marks = moments.write_markers(3)
        before = moments.wait_shipped(marks[-1][1])
        assert before.earliest is not None
        with session_scope(moments.wal.catalog) as session:
            stream = moments.wal.stream_row()
            assert stream is not None
            record_gap(
                session,
                namespace=moments.namespace,
                service="db",
                system_identifier=stream.system_identifier,
                start_lsn=stream.shipped_lsn,
                end_lsn=stream.shipped_lsn,
                reason="a test's gap",
            )
        cut = moments.window()
        assert (cut.earliest, cut.latest) == (None, None)
        assert "gap" in (cut.reason or "")
        client = TestClient(create_app(moments.wal.fleet, lambda *_: "never"))
        refused = client.post(
            f"{API}/ondemandrestore",
            headers=AUTH,
            json={"namespace": moments.namespace, "targetTime": format_moment(marks[1][1])},
        )
        assert refused.status_code == 422
        assert "recoverable window of service db" in refused.json()["message"]
        assert (
            "none (no successful base backup since the last WAL gap)" in (refused.json()["message"])
        )
        again = moments.base_backup()
        later = moments.write_markers(2)
        reopened = moments.wait_shipped(later[-1][1])
        assert [base.timestamp for base in reopened.bases] == [again]
        assert reopened.earliest is not None and reopened.earliest > marks[-1][1]


@pytest.mark.timeout(240)
def test_restore_to_a_moment_from_an_s3_server(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: Any,
    s3_bucket: str,
) -> None:
    s3 = s3_env(s3_server, s3_bucket)
    with moments_fleet(tmp_path, redis_server, wal_postgres, monkeypatch, s3) as moments:
        fleet = moments.wal.fleet()
        with moments.wal.streaming():
            wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
            stamp = moments.base_backup()
            marks = moments.write_markers(12)
            moments.wait_shipped(marks[-1][1])
            target = between(marks, 8)
            from workers.operations.jobs import request_restore

            row = request_restore(
                fleet,
                namespace=moments.namespace,
                timestamp=None,
                target_time=target,
                requested_by="test",
                enqueue=lambda *_: uuid.uuid4().hex,
            )
            assert row.timestamp == stamp
            assert run_restore(fleet, restore_id=row.id) == "Success"
        assert moments.markers() == present_through(marks, target) == list(range(1, 10))


@pytest.mark.timeout(180)
def test_a_target_after_the_last_commit_replays_all_the_wal_shipped(
    moments: Moments, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL ends a recovery whose WAL holds no commit after the target with "recovery
    ended before configured recovery target was reached": the restore starts the scratch
    again without a target, and gets every commit (all of them before the target)."""
    fleet = moments.wal.fleet()
    with moments.wal.streaming():
        wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
        moments.base_backup()
        marks = moments.write_markers(5)
        quiet = marks[-1][1] + seconds(1.5)  # nothing committed since the last marker
        moments.wait_shipped(quiet + seconds(0.5))
        from workers.operations.jobs import request_restore

        row = request_restore(
            fleet,
            namespace=moments.namespace,
            timestamp=None,
            target_time=quiet,
            requested_by="test",
            enqueue=lambda *_: uuid.uuid4().hex,
        )
        with caplog.at_level("INFO", logger="workers.pitr.base_restore"):
            assert run_restore(fleet, restore_id=row.id) == "Success"
    assert moments.markers() == [1, 2, 3, 4, 5]
    assert "replaying all of it" in caplog.text
    with session_scope(moments.wal.catalog) as session:  # timed, with the moment
        (timed,) = session.query(RecoveryRun).filter_by(restore_id=row.id).all()
        assert (timed.trigger, timed.status, timed.target_time) == ("restore", "Success", quiet)


@pytest.mark.timeout(180)
def test_prepare_datadir_writes_a_data_directory_that_recovers_to_the_moment(
    moments: Moments, tmp_path: Path
) -> None:
    """The runbook alternative: `backfleet wal prepare-datadir`, then a server started on the
    folder recovers to the moment and promotes; the folder must be new or empty."""
    with moments.wal.streaming():
        wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
        stamp = moments.base_backup()
        marks = moments.write_markers(10)
        moments.wait_shipped(marks[-1][1])
    target = between(marks, 4)
    into = moments.scratch / "datadir"
    runner = CliRunner()
    args = ["wal", "prepare-datadir", "db", "--namespace", moments.namespace]
    done = runner.invoke(main, [*args, "--to-time", format_moment(target), "--into", str(into)])
    assert done.exit_code == 0, done.output
    assert f"base backup {stamp} and " in done.output
    assert (into / "recovery.signal").exists()
    assert "recovery_target_time" in (into / "postgresql.auto.conf").read_text()
    again = runner.invoke(main, [*args, "--to-time", format_moment(target), "--into", str(into)])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    outside = runner.invoke(
        main, [*args, "--to-time", "2001-01-01T00:00:00Z", "--into", str(tmp_path / "x")]
    )
    assert outside.exit_code == 2 and "outside the recoverable window" in outside.output
    assert not (tmp_path / "x").exists()

    with started_on(into) as socket_dir:
        url = f"postgresql://postgres@/{moments.database}?host={socket_dir}&port=5432"
        with psycopg.connect(url) as conn:
            rows = [row[0] for row in conn.execute("SELECT id FROM markers ORDER BY id")]
    assert rows == present_through(marks, target) == [1, 2, 3, 4, 5]


@contextmanager
def started_on(data: Path) -> Iterator[Path]:
    """A PostgreSQL on `data`, reached only through a socket folder beside it, until it has
    recovered; stopped at the end."""
    user = "postgres" if os.geteuid() == 0 else None
    sockets = data.parent / "sock"
    sockets.mkdir()
    if user is not None:
        for path in (data, sockets):
            subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)
    data.chmod(0o700)
    programs = server_programs(int((data / "PG_VERSION").read_text()))
    argv = [str(programs.postgres), "-D", str(data), "-c", "listen_addresses="]
    argv += ["-c", f"unix_socket_directories={sockets}", "-c", "port=5432"]
    for name, value in WAL_SETTINGS.items():  # the source server's: a standby needs as much
        argv += ["-c", f"{name}={value}"]
    kwargs: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    log = (data.parent / "started.log").open("ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def promoted() -> bool:
        try:
            info = f"host={sockets} port=5432 user=postgres dbname=postgres"
            with psycopg.connect(info, connect_timeout=2) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                return row is not None and not row[0]
        except psycopg.Error:
            assert process.poll() is None, (data.parent / "started.log").read_text()
            return False

    try:
        wait_for(promoted, timeout=60, what="the server recovered and promoted")
        yield sockets
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        log.close()
