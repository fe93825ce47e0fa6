"""Retention of the WAL of a `pitr` service, from rows and objects a streamer and its base
backups would leave (a real SQLite catalog, a local store, Redis for the retention lock):
the window keeps a base backup, WAL goes back to the oldest base backup kept and never
further, after the backups, with audit events; a dry run lists it per service."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import workers.operations.retention.wal_deletion
from tests.health_fleet import capture_system_events, make_fleet
from tests.wal_rows import PITR, SID, MiB, base_backup, ship, ship_history, wal_rows
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.catalog.wal import save_stream
from workers.cli import main
from workers.fleet import Fleet
from workers.operations.gfs import Policy
from workers.operations.retention import apply_retention
from workers.pitr.lsn import format_lsn
from workers.timestamps import utcnow

NEWEST_ONLY = Policy(hourly=1, daily=0, weekly=0, monthly=0, yearly=0)
OTHER = "7300000000000000099"


@pytest.fixture(autouse=True)
def _locks(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", redis_server.url)
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)
    yield
    dispose_engines()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return capture_system_events(monkeypatch, workers.operations.retention.wal_deletion)


def pitr_fleet(tmp_path: Path, window: str) -> Fleet:
    return make_fleet(tmp_path, extra_services=PITR + f'pitr_window = "{window}"\n')


def history(fleet: Fleet, *, days: int = 3) -> tuple[list[str], dict[int, int]]:
    """Three base backups (3 days, 2 days and 30 minutes ago, starting in segments 2, 5
    and 8), segments 1 to 10 complete, 11 growing, a history file; the segment numbers
    of the WAL rows by id."""
    now = utcnow()
    moments = [now - timedelta(days=days), now - timedelta(days=2), now - timedelta(minutes=30)]
    stamps = [
        base_backup(fleet, moment, start=number * MiB + 0x28)
        for moment, number in zip(moments, (2, 5, 8), strict=True)
    ]
    rows = [ship(fleet, number) for number in range(1, 11)]
    rows.append(ship(fleet, 11, partial=True))
    ship_history(fleet, 2, at=0)
    return stamps, {row.id: row.start_lsn // MiB for row in rows}


def segments_left(fleet: Fleet) -> list[int]:
    return [row.start_lsn // MiB for row in wal_rows(fleet) if row.kind == "segment"]


def objects_left(fleet: Fleet) -> set[str]:
    return {info.key for info in fleet.store.list("app/wal/")}


def test_the_wal_before_the_oldest_base_backup_kept_goes_with_an_audit_event(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = pitr_fleet(tmp_path, "10m")  # the window needs nothing older than the newest
    stamps, _ = history(fleet)

    (dry,) = apply_retention(fleet, policy=NEWEST_ONLY, dry_run=True)
    assert set(dry.delete) == set(stamps[:2])
    (prune,) = dry.wal
    assert (prune.files, prune.deleted) == (7, 0)  # segments 1 to 7: all before 8's start
    assert (prune.start_lsn, prune.end_lsn) == (format_lsn(MiB), format_lsn(8 * MiB))
    assert prune.first.endswith("01") and prune.last.endswith("07")
    assert stamps[2] in prune.reason and format_lsn(8 * MiB + 0x28) in prune.reason
    assert segments_left(fleet) == list(range(1, 12)) and events == []

    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    assert set(plan.delete) == set(stamps[:2])
    assert plan.wal[0].deleted == 7 and plan.wal[0].error is None
    # Exactly what the kept base backup needs stays: from its start's segment on.
    assert segments_left(fleet) == [8, 9, 10, 11]
    rows = wal_rows(fleet)
    assert objects_left(fleet) == {row.key for row in rows}  # rows and objects alike
    assert any(row.kind == "history" for row in rows)  # history files are never deleted
    (event,) = events
    assert event["name"] == "WalDeleted"
    params = event["params"]
    assert (params["service"], params["files"]) == ("pg", "7")
    assert (params["startLsn"], params["endLsn"]) == (format_lsn(MiB), format_lsn(8 * MiB))
    assert params["systemIdentifier"] == SID and stamps[2] in params["reason"]

    (again,) = apply_retention(fleet, policy=NEWEST_ONLY)  # nothing more to do
    assert again.wal == [] and segments_left(fleet) == [8, 9, 10, 11]


def test_the_window_keeps_an_older_base_backup_and_its_wal(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, "1d")
    stamps, _ = history(fleet)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    # The newest base backup consistent at or before now - 1d is the 2-day-old one.
    assert set(plan.delete) == {stamps[0]}
    assert any(reason.startswith("pitr window of pg (1d)") for reason in plan.keep[stamps[1]])
    assert "pitr window" in plan.keeping[stamps[1]]
    assert plan.wal[0].deleted == 4  # segments 1 to 4: before the 2-day-old one's start
    assert segments_left(fleet) == [5, 6, 7, 8, 9, 10, 11]


def test_a_seven_day_default_window_keeps_everything_younger(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, extra_services=PITR)  # PITR_WINDOW: 7d
    stamps, _ = history(fleet, days=8)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    # The 8-day-old one is the window's start: the 2-day-old one is not needed (a restore
    # to any moment of the window starts from the older one and replays the WAL).
    assert set(plan.delete) == {stamps[1]}
    assert any("pitr window of pg (7d)" in reason for reason in plan.keep[stamps[0]])
    assert plan.wal[0].deleted == 1 and segments_left(fleet)[0] == 2


def test_wal_of_other_clusters_and_the_streamer_s_newest_segments(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, "10m")
    now = utcnow()
    for number in (1, 2, 3):  # a re-initialised server's old WAL: no base backup kept
        ship(fleet, number, sid=OTHER, timeline=2)
    for number in (4, 5, 6):
        ship(fleet, number)
    ship(fleet, 7, partial=True)
    # The base backup starts past what was shipped (the streamer lags behind it).
    base_backup(fleet, now - timedelta(hours=1), start=9 * MiB)
    with session_scope(fleet.settings.database_url) as session:
        save_stream(session, namespace="app", service="pg", slot="s", system_identifier=SID)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    by_cluster = {prune.system_identifier: prune for prune in plan.wal}
    assert by_cluster[OTHER].deleted == 3 and "restores nothing" in by_cluster[OTHER].reason
    # Never the newest complete segment (a restarted streamer may ship it again), nor the
    # growing partial.
    assert by_cluster[SID].deleted == 2
    assert segments_left(fleet) == [6, 7]


def test_the_streamed_cluster_keeps_its_wal_until_its_first_base_backup(tmp_path: Path) -> None:
    fleet = pitr_fleet(tmp_path, "10m")
    for number in (1, 2, 3):
        ship(fleet, number)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    assert plan.wal == [] and segments_left(fleet) == [1, 2, 3]


def test_a_failed_deletion_stops_oldest_first_and_is_alerted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = pitr_fleet(tmp_path, "10m")
    history(fleet)
    real = fleet.store.delete

    def delete(key: str) -> None:
        if "00000004" in key:
            raise OSError("the store said no")
        real(key)

    monkeypatch.setattr(fleet.store, "delete", delete)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    (prune,) = plan.wal
    assert prune.deleted == 3 and "the store said no" in (prune.error or "")
    assert segments_left(fleet) == [4, 5, 6, 7, 8, 9, 10, 11]  # no hole: a suffix is left
    with session_scope(fleet.settings.database_url) as session:
        alert = session.query(Alert).filter_by(event="retention.failed").one()
        assert "wal/pg" in alert.text and alert.resolved_at is None

    monkeypatch.setattr(fleet.store, "delete", real)
    (plan,) = apply_retention(fleet, policy=NEWEST_ONLY)
    assert plan.wal[0].deleted == 4 and segments_left(fleet) == [8, 9, 10, 11]
    with session_scope(fleet.settings.database_url) as session:
        assert session.query(Alert).filter_by(event="retention.failed").one().resolved_at


def test_the_cli_says_what_wal_would_go_per_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = pitr_fleet(tmp_path, "10m")
    history(fleet)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    shown = CliRunner().invoke(main, ["retention", "--dry-run", "--namespace", "app"])
    assert shown.exit_code == 0, shown.output
    (line,) = [line for line in shown.output.splitlines() if "WAL" in line]
    # RETENTION_KEEP_* keep all three base backups: only what precedes the oldest goes.
    assert line.startswith("would delete 1 WAL file of app/pg (4.0 KiB, ")
    assert f"LSN {format_lsn(MiB)} to {format_lsn(2 * MiB)}" in line
    assert segments_left(fleet) == list(range(1, 12))
