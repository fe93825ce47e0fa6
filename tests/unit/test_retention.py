"""The retention pass over a real catalog and a local store (and an Object-Locked stand-in)."""

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

import workers.operations.retention.deletion
from tests.health_fleet import capture_system_events, make_fleet
from tests.unit.test_gfs import END, expected_two_years, hourly_history
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, SUCCESS, Backup
from workers.cli import main
from workers.errors import ConfigError
from workers.fleet import Fleet
from workers.operations.gfs import Policy
from workers.operations.retention import apply_retention, set_pinned
from workers.repository.manifest import backup_prefix, manifest_key
from workers.services_config import parse_fleet_config
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
    # Every BackupDeleted event, the primary's and the secondary's, is recorded there.
    return capture_system_events(monkeypatch, workers.operations.retention.deletion)


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
    assert plan.keep[stamps[4]] == ["newest verified-good backup of service db"]
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


def test_config_only_backups_join_the_series_of_the_services_they_hold(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = make_fleet(tmp_path)
    moments = hours(5)
    full = add_backups(fleet, moments[:2], services=["db", "files"])
    config = add_backups(fleet, moments[2:4], only_config=True, services=["files"])
    newer = add_backups(fleet, moments[4:], services=["db", "files"])
    (plan,) = apply_retention(fleet, policy=Policy(hourly=1, daily=0, weekly=0, monthly=0))
    # A config-only backup is one more copy of `files`: the newer full backup's copy
    # supersedes it. It never stood in for `db`, whose series it is not in.
    assert set(plan.keep) == {newer[0]}
    assert plan.keep[newer[0]] == ["newest backup of service db", "newest backup of service files"]
    assert set(plan.delete) == {*full, *config}
    assert plan.delete[config[0]] == (
        "not kept by retention of any service it holds: files (keep-hourly 1, keep-daily 0, "
        "keep-weekly 0, keep-monthly 0, keep-yearly 0)"
    )
    assert "of any service it holds: db (keep-hourly 1" in plan.delete[full[0]]
    assert "; files (keep-hourly 1" in plan.delete[full[0]]


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
    assert missing.exit_code == 1 and "no backup 2001-01-01t00-00-00" in missing.output
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


PER_SERVICE = """
[namespaces.app.services.db]
kind = "sqlite"
path = "/x.db"
[namespaces.app.services.db.retention]
keep-hourly = 1
[namespaces.app.services.files]
kind = "directory"
path = "/files"
{namespace_table}
[namespaces.other.services.db]
kind = "sqlite"
path = "/y.db"
"""
SETTINGS_KEEP_5_HOURS = {
    "retention_keep_hourly": 5,
    "retention_keep_daily": 0,
    "retention_keep_weekly": 0,
    "retention_keep_monthly": 0,
}


def per_service_fleet(tmp_path: Path, namespace_table: str = "", **settings: Any) -> Fleet:
    config = parse_fleet_config(PER_SERVICE.format(namespace_table=namespace_table))
    return replace(make_fleet(tmp_path, **{**SETTINGS_KEEP_5_HOURS, **settings}), config=config)


def separate_schedules(fleet: Fleet, count: int) -> dict[str, list[str]]:
    """`count` hours of db-only and files-only backups, minutes apart."""
    return {
        "db": add_backups(fleet, hours(count), services=["db"]),
        "files": add_backups(
            fleet, [m + timedelta(minutes=30) for m in hours(count)], services=["files"]
        ),
    }


def test_each_service_takes_its_table_then_the_namespace_then_the_settings(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    fleet = per_service_fleet(tmp_path, "[namespaces.app.retention]\nkeep-hourly = 3\n")
    taken = separate_schedules(fleet, 8)
    (plan,) = apply_retention(fleet, namespace="app", dry_run=True)
    assert set(plan.keep) == {taken["db"][-1], *taken["files"][-3:]}  # its 1; the namespace's 3
    assert plan.policies == {
        "db": "keep-hourly 1, keep-daily 0, keep-weekly 0, keep-monthly 0, keep-yearly 0",
        "files": "keep-hourly 3, keep-daily 0, keep-weekly 0, keep-monthly 0, keep-yearly 0",
    }
    assert plan.keep[taken["files"][-2]] == ["files: hourly"]
    assert plan.delete[taken["db"][0]].startswith(
        "not kept by retention of any service it holds: db (keep-hourly 1, keep-daily 0"
    )
    # Without the namespace's table, `files` takes RETENTION_KEEP_* (5 hours).
    fleet = per_service_fleet(tmp_path / "again")
    taken = separate_schedules(fleet, 8)
    (plan,) = apply_retention(fleet, namespace="app")
    assert set(plan.keep) == {taken["db"][-1], *taken["files"][-5:]}
    assert catalog_stamps(fleet) == stored_stamps(fleet) == set(plan.keep)
    assert {e["params"]["timestamp"] for e in events} == set(plan.delete)
    assert all("of any service it holds" in e["params"]["reason"] for e in events)


def test_a_service_policy_that_keeps_nothing_is_refused_naming_the_service(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    # The settings leave only keep-hourly on; `db` of namespace `other` turns it off.
    zeroed = "[namespaces.other.services.db.retention]\nkeep-hourly = 0\n"
    fleet = per_service_fleet(tmp_path, zeroed)
    stamps = add_backups(fleet, hours(8), services=["db", "files"])
    refused = r"namespace other keeps nothing for service db \(keep-hourly 0, .*\): set a count"
    with pytest.raises(ConfigError, match=refused):
        apply_retention(fleet)  # `app` comes first, but nothing is touched before the refusal
    assert catalog_stamps(fleet) == stored_stamps(fleet) == set(stamps)
    assert events == []
    with pytest.raises(ConfigError, match=refused):
        apply_retention(fleet, namespace="other", dry_run=True)
    (plan,) = apply_retention(fleet, namespace="app")  # its own policies keep something
    assert set(plan.keep) == set(stamps[-5:])


def test_a_service_no_longer_configured_takes_the_namespace_policy(
    tmp_path: Path, events: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    fleet = per_service_fleet(tmp_path, "[namespaces.app.retention]\nkeep-hourly = 2\n")
    db = add_backups(fleet, hours(4), services=["db"])
    old = add_backups(
        fleet, [m + timedelta(minutes=30) for m in hours(6)], services=["db", "grafana"]
    )
    with caplog.at_level("WARNING", logger="workers.operations.retention"):
        (plan,) = apply_retention(fleet, namespace="app")
    assert "grafana no longer in the services file" in caplog.text
    note = "not in the services file: the namespace's policy"
    assert plan.policies["grafana"].endswith(f"; {note}")
    assert plan.policies["grafana"].startswith("keep-hourly 2, keep-daily 0")
    # Its newest two stay, the newer also `db`'s newest copy; the db-only ones all go.
    assert set(plan.keep) == {old[-1], old[-2]}
    assert plan.keep[old[-2]] == ["grafana: hourly"]
    assert "; grafana (keep-hourly 2, keep-daily 0" in plan.delete[old[0]]
    assert set(plan.delete) == {*db, *old[:-2]}


def test_the_cli_explains_what_keeps_each_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = per_service_fleet(tmp_path)
    taken = separate_schedules(fleet, 3)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    out = CliRunner().invoke(main, ["retention", "--namespace", "app", "--dry-run", "--explain"])
    assert out.exit_code == 0, out.output
    assert "app policy of db: keep-hourly 1, keep-daily 0" in out.output
    assert "app policy of files: keep-hourly 5, keep-daily 0" in out.output
    assert f"keep app/{taken['db'][-1]}: newest backup of service db" in out.output
    assert f"keep app/{taken['files'][1]}: files: hourly" in out.output
    assert f"would delete app/{taken['db'][0]}: not kept by retention" in out.output
    assert "app: 4 kept, 2 would delete" in out.output


def test_the_secondary_groups_uncatalogued_backups_by_their_authentic_manifests(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    from pydantic import SecretStr

    from workers.operations.retention import apply_secondary_retention
    from workers.repository.manifest import ArtifactEntry, Manifest
    from workers.repository.manifest_mac import MacKeys

    key = SecretStr("secondary-test-signing-key-0123456789")
    fleet = make_fleet(tmp_path, backup_signing_key=key)
    second = LocalStore(tmp_path / "second")
    second.init()
    counts = {f"retention_keep_{p}": 0 for p in ("daily", "weekly", "monthly", "yearly")}
    counts["retention_keep_hourly"] = 1
    secondary_settings = fleet.settings.model_copy(update=counts)
    fleet = replace(fleet, secondary=second, secondary_settings=secondary_settings)
    signer = MacKeys.from_settings(fleet.settings).current

    def held(moment: datetime, service: str, *, signed: bool = True) -> str:
        """A backup the secondary holds and the catalog no longer knows."""
        stamp = format_timestamp(moment)
        entry = ArtifactEntry(
            service=service,
            key=f"{backup_prefix('app', stamp)}{service}.tar.zst",
            format="tar",
            compression="zstd",
            size=1,
            sha256="0" * 64,
            source_size=1,
        )
        manifest = Manifest(
            namespace="app", timestamp=stamp, started_at="-", finished_at="-", artifacts=[entry]
        )
        second.put_object(entry.key, b"x")
        second.put_object(manifest_key("app", stamp), manifest.to_bytes(signer if signed else None))
        return stamp

    db = [held(m, "db") for m in hours(4)]
    ca = [held(m + timedelta(minutes=30), "step-ca") for m in hours(2)]
    # Unsigned, it cannot be authenticated: it must not push the real step-ca copies out.
    forged = held(hours(6)[-1], "step-ca", signed=False)
    (plan,) = apply_secondary_retention(fleet)
    assert plan.keep == {
        db[-1]: ["newest backup of service db"],
        ca[-1]: ["newest backup of service step-ca"],
        forged: ["newest backup whose services are unknown"],
    }
    assert plan.delete[ca[0]] == (
        "not kept by the secondary store's retention of any service it holds: step-ca "
        "(keep-hourly 1, keep-daily 0, keep-weekly 0, keep-monthly 0, keep-yearly 0)"
    )
    assert {info.key.split("/")[1] for info in second.list("app/")} == set(plan.keep)
    assert {e["params"]["timestamp"] for e in events} == {*db[:-1], ca[0]}
    assert all(e["params"]["store"] == "secondary" for e in events)


def test_a_pass_that_could_not_delete_alerts_until_one_does_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deletion (or a move, or a lock extension) that fails is an alert, not only a log
    line, and the first pass that does all it planned resolves it (second review, 4)."""
    from workers.catalog.models import Alert

    fleet = make_fleet(tmp_path)
    add_backups(fleet, hours(4))
    real_delete = fleet.store.delete

    def refuse(key: str) -> None:
        raise PermissionError("AccessDenied: s3:DeleteObject")

    monkeypatch.setattr(fleet.store, "delete", refuse)
    (plan,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    assert plan.failed

    def alerts() -> list[tuple[str, bool]]:
        with session_scope(fleet.settings.database_url) as session:
            rows = session.scalars(select(Alert).where(Alert.event == "retention.failed"))
            return [(row.condition, row.resolved_at is None) for row in rows]

    assert alerts() == [("retention.failed:app", True)]
    apply_retention(fleet, policy=KEEP_2_HOURS)  # still failing: the same alert, still open
    assert alerts() == [("retention.failed:app", True)]
    monkeypatch.setattr(fleet.store, "delete", real_delete)
    (done,) = apply_retention(fleet, policy=KEEP_2_HOURS)
    assert not done.failed
    assert alerts() == [("retention.failed:app", False)]
