"""Storage tiers that follow retention, through a real fleet: backups taken at injected
moments, retention passes run at injected moments, against moto's S3 server and Azurite.

With `monthly=STANDARD_IA,yearly=DEEP_ARCHIVE` (Azure: `monthly=Cool,yearly=Archive`) and
keep-daily 1, keep-monthly 2, keep-yearly 3:

    2024-12-20  the newest of 2024            kept by yearly           -> DEEP_ARCHIVE
    2025-11-10  neither the newest of its month among the last two, nor of its year: deleted
    2025-12-30  the newest of 2025 and of December   monthly, yearly   -> STANDARD_IA
    2026-01-10  the newest backup                                      stays STANDARD

Then: the manifests stay in the default class; the archived backup verifies without a
read (checked by metadata) and restores after a rehydration (both servers rehydrate at
once: AWS and Azure take hours, which is left untested); a tighter policy would delete
the moved backups, but their class's billed minimum keeps them unless forced.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import workers.operations.upkeep
from tests.health_fleet import capture_system_events, make_fleet, take_backup
from tests.plugins.object_stores import AzuriteServer, MotoServer, unique_name
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Backup, Restore, Verification
from workers.fleet import Fleet
from workers.operations import gfs
from workers.operations.restore import run_restore
from workers.operations.retention import apply_retention
from workers.operations.verify import verify_backup
from workers.repository.manifest import MANIFEST_NAME, backup_prefix
from workers.stores import make_store
from workers.stores.base import ObjectStore

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MOMENTS = [
    datetime(2024, 12, 20, 10, tzinfo=UTC),
    datetime(2025, 11, 10, 10, tzinfo=UTC),
    datetime(2025, 12, 30, 10, tzinfo=UTC),
    datetime(2026, 1, 10, 10, tzinfo=UTC),
]
FIRST_PASS = datetime(2026, 1, 11, 2, 30, tzinfo=UTC)
SECOND_PASS = datetime(2026, 1, 20, 2, 30, tzinfo=UTC)
COUNTS = {
    "retention_keep_hourly": 0,
    "retention_keep_daily": 1,
    "retention_keep_weekly": 0,
    "retention_keep_monthly": 2,
    "retention_keep_yearly": 3,
}
TIGHTER = gfs.Policy(hourly=0, daily=1, weekly=0, monthly=1, yearly=1)


@pytest.fixture(autouse=True)
def _locks(redis_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BROKER_URL", redis_server.url)  # retention takes a lock in Redis
    monkeypatch.delenv("LOCK_REDIS_URL", raising=False)
    yield
    dispose_engines()


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    yield moto_server
    moto_server.reset()


def s3_fleet(tmp_path: Path, moto: MotoServer, **overrides: Any) -> Fleet:
    settings = moto.make_settings(
        unique_name(), storage_classes="monthly=STANDARD_IA,yearly=DEEP_ARCHIVE", **overrides
    )
    store = make_store(settings)
    store.init()
    return make_fleet(tmp_path, store=store, settings=settings, **COUNTS)


def classes_in_store(store: ObjectStore, stamp: str) -> dict[str, str]:
    """Each object of the backup -> the class the store reports, by its object name."""
    return {
        info.key.rsplit("/", 1)[1]: store.storage_class_of(info.key)
        for info in store.list(backup_prefix("app", stamp))
    }


def catalog_classes(fleet: Fleet, stamp: str) -> set[tuple[str | None, datetime | None]]:
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None
        return {(a.storage_class, a.storage_class_since) for a in backup.artifacts}


def check_tiers_follow_retention(
    fleet: Fleet,
    monkeypatch: pytest.MonkeyPatch,
    *,
    monthly: str,
    yearly: str,
    asked_back: Any,
    rehydrated_to: str | None,
) -> None:
    """`asked_back(key)`: was the object asked back from its archive class?
    `rehydrated_to`: the class a rehydration leaves an object in (None: it stays archived,
    S3 serving a temporary copy)."""
    store, default = fleet.store, fleet.store.default_storage_class
    events = capture_system_events(monkeypatch, workers.operations.upkeep)
    yearly_only, gone, both, newest = (take_backup(fleet, moment=m) for m in MOMENTS)

    (plan,) = apply_retention(fleet, namespace="app", now=FIRST_PASS)

    assert set(plan.delete) == {gone}
    assert plan.keeping[both] == {"monthly", "yearly"}
    assert plan.keeping[yearly_only] == {"yearly"}
    assert {stamp: move.storage_class for stamp, move in plan.moves.items()} == {
        both: monthly,
        yearly_only: yearly,
    }
    for stamp, wanted in ((both, monthly), (yearly_only, yearly), (newest, default)):
        found = classes_in_store(store, stamp)
        assert found.pop(MANIFEST_NAME) == default  # the manifest stays where it was written
        assert set(found.values()) == {wanted}, stamp
    assert catalog_classes(fleet, both) == {(monthly, FIRST_PASS)}
    assert catalog_classes(fleet, yearly_only) == {(yearly, FIRST_PASS)}
    assert catalog_classes(fleet, newest) == {(default, None)}
    moved = [e["params"] for e in events if e["name"] == "BackupStorageClassChanged"]
    assert sorted((p["timestamp"], p["storageClass"]) for p in moved) == sorted(
        [(both, monthly), (yearly_only, yearly)]
    )
    (again,) = apply_retention(fleet, namespace="app", now=FIRST_PASS + timedelta(hours=1))
    assert again.moves == {} and again.delete == {}  # done: nothing moves twice

    # Verification of the archived backup reads no byte of it (it cannot: unrestored, a read
    # fails), and says it judged it by the store's metadata. (The newest is read back first,
    # so that it stays the newest verified-good backup, which retention keeps where it is.)
    (read_back,) = verify_backup(fleet, namespace="app", timestamp=newest)
    assert (read_back.kind, read_back.by_metadata, read_back.status) == ("read", 0, SUCCESS)
    (verified,) = verify_backup(fleet, namespace="app", timestamp=yearly_only)
    assert (verified.status, verified.error) == (SUCCESS, None)
    assert (verified.by_metadata, verified.bytes_read, verified.kind) == (2, 0, "metadata")
    with session_scope(fleet.settings.database_url) as session:
        row = session.scalars(
            select(Verification).where(Verification.timestamp == yearly_only)
        ).one()
        assert (row.kind, row.status, row.bytes_read) == ("metadata", SUCCESS, 0)
    assert not any(asked_back(key) for key in archived_keys(store, yearly_only))

    # A restore of it asks for every archived artifact, waits, and restores.
    files = Path(fleet.config.services_of("app")["files"].path or "")
    (files / "a.txt").write_text("changed after the backups\n")
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=yearly_only,
            services=["db", "files"],
            skipped=[],
            backup_url="x",
        ).id
    assert run_restore(fleet, restore_id=restore_id) == SUCCESS
    assert (files / "a.txt").read_text() == "alpha\n"
    assert all(asked_back(key) for key in archived_keys(store, yearly_only))
    with session_scope(fleet.settings.database_url) as session:
        restore = session.get(Restore, restore_id)
        assert restore is not None and restore.message is None  # the wait is over
    if rehydrated_to is not None:  # Azure: the blobs left Archive; the next pass puts them back
        assert {cls for cls, _ in catalog_classes(fleet, yearly_only)} == {rehydrated_to}
        (back,) = apply_retention(fleet, namespace="app", now=FIRST_PASS, dry_run=True)
        assert {s: m.storage_class for s, m in back.moves.items()} == {yearly_only: yearly}

    # A tighter policy would delete both moved backups, but their billed minimum holds them.
    latest = take_backup(fleet, moment=SECOND_PASS - timedelta(days=1))
    (verified,) = verify_backup(fleet, namespace="app", timestamp=latest)  # the newest good
    assert verified.status == SUCCESS
    (held,) = apply_retention(fleet, namespace="app", policy=TIGHTER, now=SECOND_PASS, dry_run=True)
    assert held.keep[both] == [
        f"in {monthly} since 2026-01-11: its 30-day minimum ends 2026-02-10 "
        "(--force deletes it before)"
    ]
    unheld = {newest}
    if rehydrated_to is None:
        assert held.keep[yearly_only] == [
            f"in {yearly} since 2026-01-11: its 180-day minimum ends 2026-07-10 "
            "(--force deletes it before)"
        ]
    else:  # rehydrated to Hot: Azure billed the early move out of Archive then, no minimum now
        unheld.add(yearly_only)
    assert set(held.delete) == unheld
    (passed,) = apply_retention(fleet, namespace="app", policy=TIGHTER, now=SECOND_PASS)
    assert set(passed.delete) == unheld
    (forced,) = apply_retention(fleet, namespace="app", policy=TIGHTER, now=SECOND_PASS, force=True)
    assert set(forced.delete) == {both, yearly_only} - unheld
    assert "forced before its billed minimum (in " in forced.delete[both]
    assert list(store.list(backup_prefix("app", yearly_only))) == []
    with session_scope(fleet.settings.database_url) as session:
        left = session.scalars(select(Backup.timestamp).where(Backup.namespace == "app")).all()
    assert sorted(left) == [latest]


def archived_keys(store: ObjectStore, stamp: str) -> list[str]:
    return [
        info.key
        for info in store.list(backup_prefix("app", stamp))
        if not info.key.endswith("/" + MANIFEST_NAME)
    ]


def test_tiers_follow_retention_on_s3(
    tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = s3_fleet(tmp_path, moto)
    client, bucket = moto.client(), fleet.settings.aws_s3_bucket_name

    def asked_back(key: str) -> bool:
        return "Restore" in client.head_object(Bucket=bucket, Key=key)

    check_tiers_follow_retention(
        fleet,
        monkeypatch,
        monthly="STANDARD_IA",
        yearly="DEEP_ARCHIVE",
        asked_back=asked_back,
        rehydrated_to=None,
    )


def test_tiers_follow_retention_on_azure(
    tmp_path: Path,
    azurite_server: AzuriteServer,
    azure_container: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = azurite_server.make_settings(
        azure_container, storage_classes="monthly=Cool,yearly=Archive"
    )
    fleet = make_fleet(tmp_path, store=make_store(settings), settings=settings, **COUNTS)

    def asked_back(key: str) -> bool:
        # An Archive blob leaves Archive only by a rehydration (to Hot): until then, the
        # catalog and the store agree it is in Archive.
        return fleet.store.storage_class_of(key) == "Hot"

    check_tiers_follow_retention(
        fleet,
        monkeypatch,
        monthly="Cool",
        yearly="Archive",
        asked_back=asked_back,
        rehydrated_to="Hot",
    )


def test_the_lock_of_what_the_policy_keeps_is_extended_on_s3(
    tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS_S3_OBJECT_LOCK_DAYS=10: a pass when less than 5 days are left extends the lock of
    every object of each backup the policy keeps to the pass + 10 days (after moving it:
    the copy keeps its lock), and leaves a backup kept only by its lock alone."""
    settings = moto.make_settings(
        unique_name(),
        storage_classes="monthly=STANDARD_IA",
        aws_s3_object_lock_mode="GOVERNANCE",
        aws_s3_object_lock_days=10,
    )
    store = make_store(settings)
    store.init()  # a bucket with Object Lock
    counts = {**COUNTS, "retention_keep_yearly": 0}  # daily 1, monthly 2
    fleet = make_fleet(tmp_path, store=store, settings=settings, **counts)
    events = capture_system_events(monkeypatch, workers.operations.upkeep)
    unkept = take_backup(fleet, moment=datetime(2026, 10, 10, tzinfo=UTC))
    monthly = take_backup(fleet, moment=datetime(2026, 10, 15, tzinfo=UTC))
    newest = take_backup(fleet, moment=datetime(2026, 11, 20, tzinfo=UTC))
    client, bucket = moto.client(), settings.aws_s3_bucket_name

    def until_of(stamp: str) -> dict[str, datetime | None]:
        return {
            info.key: client.head_object(Bucket=bucket, Key=info.key).get(
                "ObjectLockRetainUntilDate"
            )
            for info in store.list(backup_prefix("app", stamp))
        }

    written = until_of(unkept)
    now = (datetime.now(UTC) + timedelta(days=6)).replace(microsecond=0)  # 4 days left
    (plan,) = apply_retention(fleet, namespace="app", now=now)

    assert plan.keep[unkept][0].startswith("object lock until")  # kept by its lock only
    assert set(plan.extensions) == {monthly, newest}
    assert set(plan.moves) == {monthly}
    extended = now + timedelta(days=10)
    for stamp in (monthly, newest):
        assert set(until_of(stamp).values()) == {extended}, stamp
    assert until_of(unkept) == written  # not extended: its policy let it go
    assert set(classes_in_store(store, monthly).values()) == {"STANDARD", "STANDARD_IA"}
    locked = [e["params"] for e in events if e["name"] == "BackupLockExtended"]
    assert sorted(p["timestamp"] for p in locked) == sorted([monthly, newest])

    (again,) = apply_retention(fleet, namespace="app", now=now + timedelta(days=1))
    assert again.extensions == {}  # 9 days left: more than half
