"""Drills of a `pitr` service against real servers: the WAL tests' private cluster (1 MiB
segments) whose WAL a streamer ships while marker rows are committed, a real base backup,
a real Redis, the local store. A drill recovers the base backup to a random moment of the
window (seeded here) through the restore-to-a-moment path into a scratch database:
the markers committed at or before it are there, none after; it is recorded and reported;
a closed window drills the consistent point and says why; a damaged WAL object fails the
drill and alerts drill.failed."""

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.main import create_app
from tests.pitr_moments import API_KEY, Moments, moments_fleet, present_through
from tests.servers import PrivatePostgres
from tests.wal_fleet import wait_for
from workers.catalog.db import session_scope
from workers.catalog.models import Alert, RecoveryRun
from workers.catalog.wal import record_gap
from workers.cli import main
from workers.monitoring.drill_alerts import check_drills
from workers.operations.restore_test import run_restore_test, run_restore_tests
from workers.timestamps import format_moment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MARGIN = timedelta(milliseconds=30)  # a drawn moment this far from any marker's commit


@pytest.fixture
def moments(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Moments]:
    with moments_fleet(tmp_path, redis_server, wal_postgres, monkeypatch) as fleet:
        yield fleet


def shipped_markers(moments: Moments, count: int) -> tuple[str, list[tuple[int, datetime]]]:
    """A base backup, then `count` markers shipped; the streamer stopped after (the window
    holds still). The backup's timestamp and the markers."""
    with moments.wal.streaming():
        wait_for(moments.wal.slot_exists, timeout=20, what="the slot")
        stamp = moments.base_backup()
        marks = moments.write_markers(count)
        moments.wait_shipped(marks[-1][1] + timedelta(seconds=1))  # and a quiet second
    return stamp, marks


def seed_for(
    moments: Moments, marks: list[tuple[int, datetime]], after: datetime, before: datetime
) -> tuple[int, datetime]:
    """A seed whose draw lands between `after` and `before` (not within MARGIN of a marker),
    and the moment it draws: the drill must land exactly there."""
    window = moments.window()
    (base,) = window.bases
    assert window.latest is not None
    low, high = base.end_time, window.latest
    for seed in range(1000):
        moment = low + (high - low) * random.Random(seed).random()
        if after < moment < before and all(abs(moment - at) > MARGIN for _, at in marks):
            return seed, moment
    raise AssertionError(f"no seed draws a moment between {after} and {before}")


def drill_rows(moments: Moments) -> list[RecoveryRun]:
    with session_scope(moments.wal.catalog) as session:
        rows = session.query(RecoveryRun).filter_by(namespace=moments.namespace).all()
        session.expunge_all()
        return sorted(rows, key=lambda row: row.id)


def open_alerts(moments: Moments) -> list[str]:
    with session_scope(moments.wal.catalog) as session:
        rows = session.query(Alert).filter(Alert.resolved_at.is_(None)).all()
        return sorted(row.condition for row in rows)


def scratch_databases(moments: Moments) -> list[str]:
    with psycopg.connect(moments.wal.server.admin_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'backfleet_restore_test_%'"
        ).fetchall()
        return [row[0] for row in rows]


@pytest.mark.timeout(240)
def test_a_drill_lands_on_a_seeded_random_moment_of_the_window_and_is_reported(
    moments: Moments, caplog: pytest.LogCaptureFixture
) -> None:
    stamp, marks = shipped_markers(moments, 20)
    seed, moment = seed_for(moments, marks, marks[2][1], marks[-3][1])
    fleet = moments.wal.fleet()

    (result,) = run_restore_tests(fleet, namespace=moments.namespace, rng=random.Random(seed))
    assert (result.timestamp, result.status, result.error) == (stamp, "Success", None)
    (drill,) = result.drills
    assert drill.target_time == moment and drill.target_skipped is None
    present = present_through(marks, moment)
    assert 3 <= len(present) < len(marks) - 2
    # The scratch database holds the markers committed at or before the moment, none after
    # (ids follow commit order), as the scratch server did at the moment.
    assert drill.counts_found is not None and drill.counts_expected == drill.counts_found
    assert drill.counts_found["public.markers"] == len(present)
    # The recovery reached the moment: its last transaction is the last marker before it.
    last = marks[len(present) - 1][1]
    assert drill.replayed_to is not None and last <= drill.replayed_to <= moment
    assert drill.replayed_to < marks[len(present)][1]
    (row,) = drill_rows(moments)
    assert (row.trigger, row.status, row.timestamp) == ("drill", "Success", stamp)
    assert (row.target_time, row.replayed_to) == (moment, drill.replayed_to)
    assert row.seconds > 0 and row.bytes_read > 0
    assert scratch_databases(moments) == [] and list(moments.scratch.iterdir()) == []
    assert moments.markers() == list(range(1, 21))  # the live database is not touched

    # Reported: GET …/report/recovery and `backfleet report`.
    client = TestClient(create_app(moments.wal.fleet, lambda *_: "never"))
    answer = client.get(
        "/athena/api/v1/report/recovery",
        params={"namespace": moments.namespace},
        headers={"Authorization": API_KEY},
    )
    assert answer.status_code == 200, answer.text
    (service,) = answer.json()
    shown = service["lastDrill"]
    assert datetime.fromisoformat(shown["targetTime"]) == moment
    assert datetime.fromisoformat(shown["replayedTo"]) == drill.replayed_to
    assert shown["targetSkipped"] is None and shown["countsOk"] is True
    printed = CliRunner().invoke(main, ["report", "--namespace", moments.namespace])
    assert f"drilled to {format_moment(moment)} (last transaction replayed: " in printed.output

    # The same seed draws the same moment: a drill is reproduced by its seed.
    again = run_restore_test(
        fleet, namespace=moments.namespace, timestamp=stamp, rng=random.Random(seed)
    )
    assert again.status == "Success" and again.drills[0].target_time == moment

    # A moment after the last commit: PostgreSQL ends that recovery early, all the WAL
    # fetched is replayed instead (it holds no commit after the moment), and that passes.
    late_seed, late = seed_for(moments, marks, marks[-1][1], marks[-1][1] + timedelta(hours=1))
    with caplog.at_level("INFO", logger="workers.pitr.base_restore"):
        after = run_restore_test(
            fleet, namespace=moments.namespace, timestamp=stamp, rng=random.Random(late_seed)
        )
    assert (after.status, after.error) == ("Success", None)
    assert "replaying all of it" in caplog.text
    (whole,) = after.drills
    assert whole.target_time == late and whole.counts_found is not None
    assert whole.counts_found["public.markers"] == len(marks)
    assert whole.replayed_to is None or marks[-1][1] <= whole.replayed_to <= late

    # A gap closes the window: the drill goes to the backup's consistent point (before
    # every marker) and says why.
    stream = moments.wal.stream_row()
    assert stream is not None
    with session_scope(moments.wal.catalog) as session:
        record_gap(
            session,
            namespace=moments.namespace,
            service="db",
            system_identifier=stream.system_identifier,
            start_lsn=stream.shipped_lsn,
            end_lsn=stream.shipped_lsn,
            reason="a test's gap",
        )
    closed = run_restore_test(
        fleet, namespace=moments.namespace, timestamp=stamp, rng=random.Random(seed)
    )
    assert closed.status == "Success"
    (point,) = closed.drills
    assert point.target_time is None and point.replayed_to is None
    assert point.target_skipped == (
        "no recoverable window: no successful base backup since the last WAL gap"
    )
    assert point.counts_found is not None and point.counts_found["public.markers"] == 0
    assert drill_rows(moments)[-1].target_skipped == point.target_skipped
    printed = CliRunner().invoke(main, ["report", "--namespace", moments.namespace])
    assert "drilled to its consistent point, not a moment: no recoverable window" in (
        printed.output
    )


@pytest.mark.timeout(240)
def test_a_damaged_wal_object_fails_the_drill_and_alerts_until_it_is_drilled_again(
    moments: Moments,
) -> None:
    stamp, marks = shipped_markers(moments, 10)
    (base,) = moments.window().bases
    complete = [
        row
        for row in moments.wal.segments(partial=False)
        if row.end_lsn > base.start_lsn  # among those a drill from the base fetches
    ]
    assert complete, "no complete WAL segment after the base backup's start"
    damaged = min(complete, key=lambda row: row.start_lsn)
    store = moments.wal.fleet().store
    with store.open_read(damaged.key) as stored:
        data = bytearray(stored.read())
    data[len(data) // 2] ^= 0x01  # one bit rotted, the size unchanged
    store.put_object(damaged.key, bytes(data))
    fleet = moments.wal.fleet()

    (result,) = run_restore_tests(fleet, namespace=moments.namespace, rng=random.Random(11))
    assert result.status == "Failed"
    (drill,) = result.drills
    assert drill.status == "Failed" and drill.target_time is not None
    # Caught by the SHA-256 at the end, or sooner by zstd where the bit lands in a frame's
    # header or block: either way the key is named and nothing was replayed from it.
    assert any(word in (drill.error or "") for word in ("SHA-256", "corrupt")), drill.error
    assert damaged.key in (drill.error or ""), drill.error
    (row,) = drill_rows(moments)
    assert (row.status, row.target_time) == ("Failed", drill.target_time)
    alerts = open_alerts(moments)
    assert f"drill.failed:{moments.namespace}:db" in alerts
    assert scratch_databases(moments) == [] and list(moments.scratch.iterdir()) == []
    assert moments.markers() == [number for number, _ in marks]

    # Drilled again, to the same moment whatever the draw: still failing, still alerted.
    again = run_restore_test(
        fleet, namespace=moments.namespace, timestamp=stamp, rng=random.Random(12)
    )
    assert again.status == "Failed" and again.drills[0].target_time == drill.target_time
    check_drills(fleet, namespaces=[moments.namespace])
    assert f"drill.failed:{moments.namespace}:db" in open_alerts(moments)
