"""WAL that went missing is recorded and alerted, and streaming goes on from a new slot: a slot
dropped while no streamer ran, dropped under a running one, invalidated by the server
(max_slot_wal_keep_size), a receiver told its WAL was removed; `backfleet wal drop-slot`;
shipping to an S3 server."""

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.plugins.object_stores import s3_metadata_sha256
from tests.plugins.wal import WAL_SEGMENT_SIZE
from tests.servers import PrivatePostgres
from tests.wal_fleet import WalFleet, check_no_gap_no_duplicate, make_fleet, s3_env, wait_for
from tests.webhook import webhook_server
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Alert, Artifact, Backup
from workers.cli import main
from workers.monitoring.wal import check_wal
from workers.timestamps import format_timestamp, utcnow

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def ship_a_few(fleet: WalFleet, count: int = 2) -> str:
    names = []
    for _ in range(count):
        fleet.write_wal(500)
        names.append(fleet.switch())
    wait_for(
        lambda: set(names) <= {row.segment for row in fleet.segments(partial=False)},
        timeout=30,
        what="segments shipped",
    )
    return names[-1]


def open_gap_alerts(fleet: WalFleet) -> list[Alert]:
    with session_scope(fleet.catalog) as session:
        rows = (
            session.query(Alert)
            .filter_by(event="wal.gap", namespace=fleet.namespace, resolved_at=None)
            .all()
        )
        session.expunge_all()
        return rows


def move_the_server_on(fleet: WalFleet) -> None:
    """Enough WAL and checkpoints that the server recycles what nothing holds."""
    for _ in range(4):
        fleet.write_wal(500)
        fleet.switch()
    fleet.execute("CHECKPOINT")
    fleet.execute("CHECKPOINT")


def backed_up(fleet: WalFleet) -> None:
    """A successful backup holding the service, finished now (a base backup)."""
    now = utcnow()
    with session_scope(fleet.catalog) as session:
        backup = Backup(
            namespace=fleet.namespace,
            timestamp=format_timestamp(now),
            status=SUCCESS,
            services=[fleet.service],
            started_at=now,
            finished_at=now,
        )
        backup.artifacts.append(
            Artifact(
                service=fleet.service,
                kind="postgres",
                key="x",
                format="pgbase",
                compression="zstd",
                status=SUCCESS,
            )
        )
        session.add(backup)


@pytest.mark.timeout(150)
def test_a_slot_dropped_while_nothing_streamed_is_a_gap_alerted_until_a_backup(
    wal_fleet: WalFleet,
) -> None:
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        ship_a_few(wal_fleet)
    before = max(row.end_lsn for row in wal_fleet.segments())
    wal_fleet.drop_slot()
    move_the_server_on(wal_fleet)
    with wal_fleet.streaming():
        (gap,) = wait_for(wal_fleet.gaps, timeout=20, what="the gap recorded")
        assert "slot" in gap.reason and "missing" in gap.reason
        assert gap.start_lsn == before and gap.end_lsn is not None and gap.end_lsn > before
        (alert,) = open_gap_alerts(wal_fleet)
        assert alert.service == wal_fleet.service and "gap" in alert.text
        after = ship_a_few(wal_fleet)  # streaming goes on from the new slot
        assert wal_fleet.slot_exists()
    rows = [row for row in wal_fleet.segments(partial=False) if row.start_lsn >= gap.end_lsn]
    assert rows and rows[-1].segment >= after
    check_wal(wal_fleet.fleet())
    assert open_gap_alerts(wal_fleet)  # no backup since: the window stays closed
    backed_up(wal_fleet)
    check_wal(wal_fleet.fleet())
    assert not open_gap_alerts(wal_fleet)


@pytest.mark.timeout(150)
def test_a_slot_dropped_under_a_running_streamer_is_a_gap_and_made_again(
    wal_fleet: WalFleet,
) -> None:
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        ship_a_few(wal_fleet)
        wal_fleet.drop_slot()
        (gap,) = wait_for(wal_fleet.gaps, timeout=10, what="the gap recorded")
        assert "dropped while streaming" in gap.reason
        assert open_gap_alerts(wal_fleet)
        wait_for(wal_fleet.slot_exists, timeout=10, what="the slot made again")
        ship_a_few(wal_fleet)
    assert len(wal_fleet.gaps()) == 1


@pytest.mark.timeout(150)
def test_a_slot_the_server_invalidated_is_a_gap(wal_fleet: WalFleet) -> None:
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        ship_a_few(wal_fleet)
    wal_fleet.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '2MB'")
    wal_fleet.execute("SELECT pg_reload_conf()")
    try:
        move_the_server_on(wal_fleet)
        status = wal_fleet.scalar(
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (wal_fleet.slot,)
        )
        assert status == "lost"
    finally:
        wal_fleet.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        wal_fleet.execute("SELECT pg_reload_conf()")
    with wal_fleet.streaming():
        (gap,) = wait_for(wal_fleet.gaps, timeout=20, what="the gap recorded")
        assert "invalidated" in gap.reason
        ship_a_few(wal_fleet)


@pytest.mark.timeout(150)
def test_a_receiver_told_its_wal_was_removed_starts_again_from_a_new_slot_with_a_gap(
    wal_fleet: WalFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in pg_receivewal says what the real one says when the server removed the WAL
    it asked for, once; then the real one runs."""
    real = os.popen("command -v pg_receivewal").read().strip()
    tools = wal_fleet.tmp / "bin"
    tools.mkdir()
    once = wal_fleet.tmp / "said-it-once"
    (tools / "pg_receivewal").write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{once}" ]; then touch "{once}"; '
        'echo "pg_receivewal: error: unexpected termination of replication stream: ERROR:  '
        'requested WAL segment 000000010000000000000003 has already been removed" >&2; exit 1; fi\n'
        f'exec "{real}" "$@"\n'
    )
    (tools / "pg_receivewal").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    with wal_fleet.streaming():
        (gap,) = wait_for(wal_fleet.gaps, timeout=20, what="the gap recorded")
        assert "removed WAL" in gap.reason and "has already been removed" in gap.reason
        ship_a_few(wal_fleet)
        assert wal_fleet.slot_exists()


@pytest.mark.timeout(120)
def test_drop_slot_refuses_while_streamed_unless_forced_then_drops_cleanly(
    wal_fleet: WalFleet,
) -> None:
    runner = CliRunner()
    args = ["wal", "drop-slot", wal_fleet.service, "--namespace", wal_fleet.namespace]
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        wait_for(wal_fleet.stream_row, timeout=10, what="the streamer's word")
        refused = runner.invoke(main, args)
        assert refused.exit_code == 1
        assert "being streamed by" in refused.output and "--force" in refused.output
        assert wal_fleet.slot_exists()
    done = runner.invoke(main, args)
    assert done.exit_code == 0, done.output
    assert f"dropped replication slot {wal_fleet.slot}" in done.output
    assert not wal_fleet.slot_exists()
    row = wal_fleet.stream_row()
    assert row is not None and row.wal_status == "dropped"
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and "nothing to drop" in again.output
    unknown = runner.invoke(main, ["wal", "drop-slot", "nope", "--namespace", wal_fleet.namespace])
    assert unknown.exit_code == 2 and "has no service nope" in unknown.output
    with wal_fleet.streaming():  # forced under a streamer: made again, a gap recorded
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        ship_a_few(wal_fleet, 1)
        forced = runner.invoke(main, [*args, "--force"])
        assert forced.exit_code == 0, forced.output
        wait_for(wal_fleet.gaps, timeout=10, what="the gap it makes")


@pytest.mark.timeout(150)
def test_segments_ship_to_an_s3_server(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: Any,
    s3_bucket: str,
) -> None:
    s3 = s3_env(s3_server, s3_bucket)
    fleet = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch, s3)
    try:
        with fleet.streaming():
            wait_for(fleet.slot_exists, timeout=20, what="the slot")
            last = ship_a_few(fleet, 3)
        assert check_no_gap_no_duplicate(fleet, through=last, segment_size=WAL_SEGMENT_SIZE) >= 3
        row = fleet.segments(partial=False)[-1]
        assert s3_metadata_sha256(s3_server, s3_bucket, row.key) == row.sha256  # it carries it
    finally:
        with contextlib.suppress(Exception):
            fleet.close()
        dispose_engines()


@pytest.mark.timeout(150)
def test_a_webhook_that_hangs_never_holds_the_stream(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with webhook_server() as hook:
        fleet = make_fleet(
            tmp_path,
            redis_server,
            wal_postgres,
            monkeypatch,
            {"ALERT_WEBHOOK_URL": hook.url, "ALERT_WEBHOOK_TIMEOUT": "60"},
        )
        hook.release.clear()  # every post waits
        try:
            with fleet.streaming():
                wait_for(fleet.slot_exists, timeout=20, what="the slot")
                ship_a_few(fleet, 1)
                fleet.drop_slot()  # a gap: its alert goes to the hanging webhook
                wait_for(fleet.gaps, timeout=10, what="the gap recorded")
                wait_for(lambda: hook.held >= 1, timeout=10, what="the alert posted")
                ship_a_few(fleet, 2)  # the stream goes on meanwhile
                hook.release.set()
            assert "wal.gap" in wait_for(hook.events, timeout=20, what="the alert delivered")
        finally:
            hook.release.set()
            fleet.close()
            dispose_engines()
