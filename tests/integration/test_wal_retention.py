"""Retention, verification and storage accounting of a `pitr` service's WAL against a real
PostgreSQL cluster (1 MiB segments) streamed by a real streamer, real base backups
(pg_basebackup through the fleet), a real Redis, and the local store or an S3 server.

Checked by LSN: after retention, every WAL file left ends after the start of the oldest
base backup kept, every one deleted ended at or before it, and what is left is contiguous
from the segment holding that start (that a restore of it replays is the restore's
tests' job)."""

import contextlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.health_fleet import take_backup
from tests.integration.test_wal_gaps import ship_a_few
from tests.plugins.wal import WAL_SEGMENT_SIZE
from tests.servers import PrivatePostgres
from tests.wal_fleet import WalFleet, check_no_gap_no_duplicate, make_fleet, s3_env, wait_for
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, Alert, Artifact, Backup, WalSegment
from workers.cli import main
from workers.fleet import reset_fleet
from workers.monitoring.storage import storage_report
from workers.operations.gfs import Policy
from workers.operations.retention import apply_retention
from workers.operations.wal_verify import verify_wal
from workers.pitr.lsn import parse_lsn
from workers.timestamps import utcnow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEWEST_ONLY = Policy(hourly=1, daily=0, weekly=0, monthly=0, yearly=0)


def with_window(fleet: WalFleet, window: str) -> None:
    services = fleet.tmp / "backfleet.toml"
    services.write_text(services.read_text() + f'pitr_window = "{window}"\n')
    reset_fleet()


def facts(fleet: WalFleet, stamp: str) -> dict[str, Any]:
    """The base backup's facts, as the catalog records them."""
    with session_scope(fleet.catalog) as session:
        artifact = (
            session.query(Artifact)
            .join(Backup)
            .filter(Backup.namespace == fleet.namespace, Backup.timestamp == stamp)
            .one()
        )
        assert artifact.format == "pgbase"
        return dict(artifact.facts or {})


def base_backup(fleet: WalFleet, **kwargs: Any) -> str:
    return take_backup(fleet.fleet(), namespace=fleet.namespace, **kwargs)


def stored_backups(fleet: WalFleet) -> set[str]:
    keys = [info.key for info in fleet.fleet().store.list(f"{fleet.namespace}/")]
    return {key.split("/")[1] for key in keys if key.endswith("/manifest.json")}


def check_kept_from(fleet: WalFleet, start: int, *, through: str) -> None:
    """Every WAL file left ends after `start`, the first holds it, none is missing after."""
    left = fleet.segments()
    assert left and all(row.end_lsn > start for row in left)
    first = min(left, key=lambda row: row.start_lsn)
    assert first.start_lsn <= start < first.start_lsn + WAL_SEGMENT_SIZE
    check_no_gap_no_duplicate(fleet, through=through, segment_size=WAL_SEGMENT_SIZE)


@pytest.mark.timeout(240)
def test_a_policy_keeping_the_newest_base_backup_keeps_exactly_its_wal(
    wal_fleet: WalFleet,
) -> None:
    now = utcnow()
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        stamps = []
        for hours in (3, 2, 1):
            ship_a_few(wal_fleet, 2)
            stamps.append(base_backup(wal_fleet, moment=now - timedelta(hours=hours)))
        ship_a_few(wal_fleet, 2)
        kept = facts(wal_fleet, stamps[-1])
        start = parse_lsn(kept["start_lsn"])
        before = {row.id: row for row in wal_fleet.segments()}
        doomed = {key for key, row in before.items() if row.end_lsn <= start}
        assert len(doomed) >= 4  # two backups' worth, at least

        fleet = wal_fleet.fleet()
        (dry,) = apply_retention(
            fleet, namespace=wal_fleet.namespace, policy=NEWEST_ONLY, dry_run=True
        )
        assert [(p.files, p.deleted) for p in dry.wal] == [(len(doomed), 0)]
        assert {row.id for row in wal_fleet.segments()} >= set(before)  # nothing deleted

        # While the streamer streams on.
        (plan,) = apply_retention(fleet, namespace=wal_fleet.namespace, policy=NEWEST_ONLY)
        assert set(plan.delete) == set(stamps[:2])
        (prune,) = plan.wal
        assert (prune.deleted, prune.error) == (len(doomed), None)
        assert prune.system_identifier == kept["system_identifier"]
        last = ship_a_few(wal_fleet, 2)  # the stream goes on, with no gap
    left = {row.id for row in wal_fleet.segments()}
    assert not left & doomed and (set(before) - doomed) <= left
    check_kept_from(wal_fleet, start, through=last)
    assert stored_backups(wal_fleet) == {stamps[-1]}  # `wal/` is no backup


@pytest.mark.timeout(240)
def test_the_pitr_window_keeps_an_older_base_backup_and_its_wal(wal_fleet: WalFleet) -> None:
    with_window(wal_fleet, "1h")
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        stamps = []
        for _ in range(3):
            ship_a_few(wal_fleet, 1)
            stamps.append(base_backup(wal_fleet))
        last = ship_a_few(wal_fleet, 1)
    second, third = (facts(wal_fleet, stamp) for stamp in stamps[1:])
    ends = [datetime.fromisoformat(item["end_time"]) for item in (second, third)]
    assert ends[0] < ends[1]
    # A pass an hour after a moment between the second and the third base backups: the
    # window's start needs the second, which GFS (the newest only) would delete.
    moment = ends[0] + (ends[1] - ends[0]) / 2
    (plan,) = apply_retention(
        wal_fleet.fleet(),
        namespace=wal_fleet.namespace,
        policy=NEWEST_ONLY,
        now=moment + timedelta(hours=1),
    )
    assert set(plan.delete) == {stamps[0]}
    assert any(reason.startswith("pitr window of db (1h)") for reason in plan.keep[stamps[1]])
    assert plan.wal and plan.wal[0].deleted > 0
    check_kept_from(wal_fleet, parse_lsn(second["start_lsn"]), through=last)
    assert stored_backups(wal_fleet) == set(stamps[1:])


@pytest.mark.timeout(240)
def test_on_s3_wal_is_pruned_verified_a_damaged_object_alerted_and_counted_in_storage(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: Any,
    s3_bucket: str,
) -> None:
    s3 = s3_env(s3_server, s3_bucket)
    wal_fleet = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch, s3)
    try:
        with wal_fleet.streaming():
            wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
            ship_a_few(wal_fleet, 3)
            stamp = base_backup(wal_fleet)
            last = ship_a_few(wal_fleet, 3)
        fleet = wal_fleet.fleet()
        start = parse_lsn(facts(wal_fleet, stamp)["start_lsn"])
        (plan,) = apply_retention(fleet, namespace=wal_fleet.namespace, policy=NEWEST_ONLY)
        assert plan.wal and plan.wal[0].deleted >= 3
        check_kept_from(wal_fleet, start, through=last)  # the S3 objects are the rows

        (result,) = verify_wal(fleet)
        rows = wal_fleet.segments()
        growing = max(rows, key=lambda row: row.end_lsn).partial  # never checked
        assert result.status == "Success" and result.files == len(rows) - growing
        damaged = min(rows, key=lambda row: row.start_lsn)
        fleet.store.put_object(damaged.key, b"not what was shipped")
        monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
        shown = CliRunner().invoke(main, ["verify", "--namespace", wal_fleet.namespace])
        assert shown.exit_code == 1, shown.output
        assert f"Failed   {wal_fleet.namespace}/db WAL" in shown.output
        assert damaged.segment in shown.output
        with session_scope(wal_fleet.catalog) as session:
            alert = session.query(Alert).filter_by(event="wal.verify_failed").one()
            assert alert.resolved_at is None and damaged.segment in alert.text
        assert [row.id for row in wal_fleet.segments() if row.verified == FAILED] == [damaged.id]

        (item,) = storage_report(fleet, namespace=wal_fleet.namespace)
        (wal,) = [line for line in item.services if line.kind == "wal"]
        with session_scope(wal_fleet.catalog) as session:
            every = session.query(WalSegment).filter_by(namespace=wal_fleet.namespace).all()
        assert (wal.objects, wal.size) == (len(every), sum(row.size for row in every))
        assert item.size > wal.size  # the base backup and its manifest too
    finally:
        with contextlib.suppress(Exception):
            wal_fleet.close()
        dispose_engines()
