"""The retention pass over a real catalog and a local store (and an Object-Locked stand-in)."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

import workers.operations.retention
from tests.health_fleet import capture_system_events, make_fleet
from tests.unit.test_gfs import END, expected_two_years, hourly_history
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, SUCCESS, Backup
from workers.cli import main
from workers.fleet import Fleet
from workers.operations.gfs import Policy
from workers.operations.retention import apply_retention, set_pinned
from workers.repository.manifest import backup_prefix, manifest_key
from workers.stores.local import LocalStore
from workers.timestamps import format_timestamp

KEEP_2_HOURS = Policy(hourly=2, daily=0, weekly=0, monthly=0, yearly=0)


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture(autouse=True)
def _locks(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention takes a lock in Redis (workers/operations/locks.py)."""
    monkeypatch.setenv("BROKER_URL", redis_server.url)
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return capture_system_events(monkeypatch, workers.operations.retention)


def _quick_write(tmp_path: Path, key: str, data: bytes) -> None:
    path = tmp_path / "store" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def add_backups(
    fleet: Fleet,
    moments: list[datetime],
    write: Callable[[str, bytes], None] | None = None,
    **columns: Any,
) -> list[str]:
    """Catalog rows and stored objects (a manifest and an artifact) of finished backups."""
    stamps = [format_timestamp(m) for m in moments]
    rows = [
        {
            "namespace": "app",
            "timestamp": s,
            "status": SUCCESS,
            "only_config": False,
            "trigger": "schedule",
            "services": ["db"],
            "created_at": m,
            **columns,
        }
        for s, m in zip(stamps, moments, strict=True)
    ]
    with session_scope(fleet.settings.database_url) as session:
        session.execute(insert(Backup), rows)
    put = write or fleet.store.put_object
    for stamp in stamps:
        put(manifest_key("app", stamp), b"{}")
        put(backup_prefix("app", stamp) + "db.sqlite.zst", b"x")
    return stamps


def catalog_stamps(fleet: Fleet) -> set[str]:
    with session_scope(fleet.settings.database_url) as session:
        return set(session.scalars(select(Backup.timestamp)))


def stored_stamps(fleet: Fleet) -> set[str]:
    return {info.key.split("/")[1] for info in fleet.store.list("app/")}


def hours(count: int) -> list[datetime]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return [start + timedelta(hours=h) for h in range(count)]


def test_unkept_backups_go_from_store_and_catalog_with_an_audit_event(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = make_fleet(tmp_path)
    stamps = add_backups(fleet, hours(5))
    failed = add_backups(fleet, [datetime(2026, 2, 1, tzinfo=UTC)], status=FAILED)
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    gone = set(stamps[:3])  # the newest two are kept; no count is left for the oldest
    assert set(plan.delete) == gone
    assert catalog_stamps(fleet) == {stamps[3], stamps[4], *failed}
    assert stored_stamps(fleet) == {stamps[3], stamps[4], *failed}
    assert [e["name"] for e in events] == ["BackupDeleted"] * 3
    assert {e["params"]["timestamp"] for e in events} == gone
    assert all("keep-hourly 2" in e["params"]["reason"] for e in events)
    assert all(e["params"]["namespace"] == "app" for e in events)


def test_dry_run_deletes_nothing(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    fleet = make_fleet(tmp_path)
    stamps = add_backups(fleet, hours(5))
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS, dry_run=True)
    assert set(plan.delete) == set(stamps[:3])
    assert catalog_stamps(fleet) == stored_stamps(fleet) == set(stamps)
    assert events == []


def test_pinned_and_newest_verified_good_backups_are_never_deleted(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = make_fleet(tmp_path)
    stamps = add_backups(fleet, hours(8))
    assert set_pinned(fleet, namespace="app", timestamp=stamps[2], pinned=True)
    with session_scope(fleet.settings.database_url) as session:
        for row in session.scalars(select(Backup)):
            if row.timestamp in (stamps[3], stamps[4]):
                row.verified = SUCCESS
            if row.timestamp == stamps[5]:
                row.verified = FAILED
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    assert plan.keep[stamps[2]] == ["pinned"]
    assert plan.keep[stamps[4]] == ["newest verified-good backup"]
    assert set(plan.delete) == {stamps[0], stamps[1], stamps[3], stamps[5]}
    assert catalog_stamps(fleet) == {stamps[2], stamps[4], stamps[6], stamps[7]}
    # Unpinned, it goes at the next pass.
    set_pinned(fleet, namespace="app", timestamp=stamps[2], pinned=False)
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    assert set(plan.delete) == {stamps[2]}


class LockedStore(LocalStore):
    """A local store whose objects under `locked` prefixes report an Object Lock retention."""

    object_lock: ClassVar[bool] = True

    def __init__(self, root: Path, locked: dict[str, datetime]) -> None:
        super().__init__(root)
        self.locked = locked

    def locked_until(self, key: str) -> datetime | None:
        return next((u for p, u in self.locked.items() if key.startswith(p)), None)


def test_object_locked_backups_are_kept_until_the_lock_ends(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    moments = hours(5)
    locked = {
        backup_prefix("app", format_timestamp(moments[1])): now + timedelta(days=3),
        backup_prefix("app", format_timestamp(moments[2])): now - timedelta(days=3),  # expired
    }
    store = LockedStore(tmp_path / "store", locked)
    store.init()
    fleet = make_fleet(tmp_path, store=store)
    stamps = add_backups(fleet, moments)
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    assert plan.keep[stamps[1]][0].startswith("object lock until")
    assert set(plan.delete) == {stamps[0], stamps[2]}


def test_full_and_config_only_backups_are_separate_series(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = make_fleet(tmp_path)
    moments = hours(4)
    full = add_backups(fleet, moments[:2])
    config = add_backups(fleet, moments[2:], only_config=True)
    (plan,) = apply_retention(fleet, policy=Policy(hourly=1, daily=0, weekly=0, monthly=0))
    # Each series keeps its own newest: a config-only backup never stands in for a full one.
    assert set(plan.keep) == {full[1], config[1]}
    assert set(plan.delete) == {full[0], config[0]}


def test_the_cli_pins_and_prints_a_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = make_fleet(
        tmp_path,
        retention_keep_hourly=2,
        retention_keep_daily=0,
        retention_keep_weekly=0,
        retention_keep_monthly=0,
    )
    stamps = add_backups(fleet, hours(5))
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    runner = CliRunner()
    pinned = runner.invoke(main, ["pin", stamps[1]])
    assert pinned.exit_code == 0 and "pinned" in pinned.output
    missing = runner.invoke(main, ["pin", "2001-01-01t00-00-00"])
    assert missing.exit_code == 2 and "no backup 2001-01-01t00-00-00" in missing.output
    dry = runner.invoke(main, ["retention", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete app/{stamps[2]}: not kept by retention" in dry.output
    assert f"would delete app/{stamps[0]}" in dry.output
    assert stamps[1] not in dry.output  # pinned
    assert "app: 3 kept, 2 would delete" in dry.output
    assert catalog_stamps(fleet) == set(stamps)
    done = runner.invoke(main, ["retention"])
    assert done.exit_code == 0 and f"deleted app/{stamps[2]}" in done.output
    assert catalog_stamps(fleet) == set(stamps) - {stamps[0], stamps[2]}


@pytest.mark.slow
def test_two_years_of_hourly_backups_leave_exactly_the_expected_set(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = make_fleet(tmp_path)
    history = hourly_history()
    # Written straight into the local store's folders: 35,000 fsyncs would time the disk.
    stamps = add_backups(fleet, history, write=lambda key, data: _quick_write(tmp_path, key, data))
    with session_scope(fleet.settings.database_url) as session:  # not the newest: still kept
        row = session.scalars(select(Backup).where(Backup.timestamp == stamps[100])).one()
        row.verified = SUCCESS
    (plan,) = apply_retention(fleet, policy=Policy())
    expected = {format_timestamp(m) for m in expected_two_years()} | {stamps[100]}
    assert catalog_stamps(fleet) == expected
    assert stored_stamps(fleet) == expected
    assert len(events) == len(history) - len(expected) == len(plan.delete)
    assert format_timestamp(END) in expected


def test_the_s3_store_reads_object_lock_retention_and_legal_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.settings import Settings
    from workers.stores.s3 import S3Store

    store = S3Store.from_settings(Settings(object_store_location_type="s3"))
    until = datetime(2030, 1, 1, tzinfo=UTC)
    heads: dict[str, dict[str, Any] | None] = {
        "a": {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until},
        "b": {"ObjectLockLegalHoldStatus": "ON"},
        "c": {"ContentLength": 3},
        "d": None,
    }
    monkeypatch.setattr(store, "_head", lambda key: heads[key])
    assert store.locked_until("a") == until
    assert store.locked_until("b") == datetime.max.replace(tzinfo=UTC)
    assert store.locked_until("c") is None and store.locked_until("d") is None


def test_a_namespace_may_set_its_own_counts_in_the_services_file(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    from dataclasses import replace

    from workers.errors import ConfigError
    from workers.services_config import parse_fleet_config

    config = parse_fleet_config(
        """
[namespaces.app.services.db]
kind = "sqlite"
path = "/x.db"
[namespaces.app.retention]
keep-hourly = 3
keep-daily = 0
keep-weekly = 0
keep-monthly = 0
[namespaces.other.services.db]
kind = "sqlite"
path = "/y.db"
"""
    )
    assert config.retention["app"].keep_hourly == 3 and "other" not in config.retention
    fleet = replace(make_fleet(tmp_path), config=config)
    stamps = add_backups(fleet, hours(6))
    (plan,) = apply_retention(fleet, namespace="app")
    assert set(plan.keep) == set(stamps[3:])
    assert "keep-hourly 3, keep-daily 0" in next(iter(plan.delete.values()))
    single = parse_fleet_config(
        '[services.db]\nkind = "sqlite"\npath = "/x.db"\n[retention]\nkeep-yearly = -1\n'
    )
    assert single.retention["app"].keep_yearly == -1
    with pytest.raises(ConfigError, match="keep-daily"):
        parse_fleet_config(
            '[services.db]\nkind = "sqlite"\npath = "/x.db"\n[retention]\nkeep-daily = -2\n'
        )
    with pytest.raises(ConfigError, match="keep-hourl"):
        parse_fleet_config(
            '[services.db]\nkind = "sqlite"\npath = "/x.db"\n[retention]\nkeep-hourl = 2\n'
        )
