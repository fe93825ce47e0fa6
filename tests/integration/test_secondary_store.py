"""The secondary store: a local primary, and a real S3 server (rclone serve s3) as the copy."""

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from tests.plugins.object_stores import S3Server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.errors import IntegrityError
from workers.fleet import Fleet
from workers.operations.gfs import Policy
from workers.operations.replicate import copy_backup, copy_pending
from workers.operations.restore import run_restore
from workers.operations.retention import apply_retention, apply_secondary_retention
from workers.operations.verify import verify_backups
from workers.repository.manifest import Manifest, manifest_key
from workers.stores import make_store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def fleet(
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    redis_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    monkeypatch.setenv("BROKER_URL", redis_server.url)  # retention takes a lock in Redis
    second = s3_server.make_settings(s3_bucket, backup_part_size=5 * 1024 * 1024)
    # Signed manifests: a backup whose catalog row the primary's retention removed is
    # still authenticated when it is restored from the secondary
    # (workers/repository/authenticity.py).
    base = make_fleet(
        tmp_path,
        secondary_object_store_location_type="s3",
        backup_signing_key=SecretStr("secondary-test-signing-key-0123456789"),
    )
    return replace(base, secondary=make_store(second), secondary_settings=second)


def manifest_of(fleet: Fleet, stamp: str) -> Manifest:
    with fleet.store.open_read(manifest_key("app", stamp)) as handle:
        return Manifest.from_bytes(handle.read())


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def restore(fleet: Fleet, stamp: str, services: list[str]) -> str:
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=services,
            skipped=[],
            backup_url="x",
        ).id
    return run_restore(fleet, restore_id=restore_id)


def test_every_successful_backup_is_copied_and_checked(fleet: Fleet) -> None:
    assert fleet.secondary is not None
    stamp = take_backup(fleet)
    report = copy_pending(fleet)
    assert report.copied == [f"app/{stamp}"] and report.failed == {}
    manifest = manifest_of(fleet, stamp)
    for entry in manifest.artifacts:
        with fleet.store.open_read(entry.key) as a, fleet.secondary.open_read(entry.key) as b:
            assert a.read() == b.read()
    with fleet.secondary.open_read(manifest_key("app", stamp)) as handle:
        assert Manifest.from_bytes(handle.read()) == manifest
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert row is not None and row.copied_at is not None
    assert copy_pending(fleet).copied == []  # copied once


def test_a_corrupt_primary_is_never_copied(fleet: Fleet, tmp_path: Path) -> None:
    assert fleet.secondary is not None
    stamp = take_backup(fleet)
    entry = manifest_of(fleet, stamp).artifact("db")
    assert entry is not None
    path = tmp_path / "store" / entry.key
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="primary store does not match"):
        copy_backup(fleet, namespace="app", timestamp=stamp)
    assert not fleet.secondary.exists(entry.key)
    assert not fleet.secondary.exists(manifest_key("app", stamp))
    assert list(fleet.secondary.list_uploads("")) == []  # the multipart upload was aborted


def test_restores_fall_back_to_the_secondary_and_verification_covers_both(
    fleet: Fleet, tmp_path: Path
) -> None:
    assert fleet.secondary is not None
    files = tmp_path / "data" / "files"
    original = digest(files)
    stamp = take_backup(fleet)
    assert [r.store for r in verify_backups(fleet)] == ["primary"]  # not copied yet
    copy_pending(fleet)
    manifest = manifest_of(fleet, stamp)
    tar = manifest.artifact("files")
    db = manifest.artifact("db")
    assert tar is not None and db is not None
    # The primary corrupts one artifact and loses the other.
    path = tmp_path / "store" / tar.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    (tmp_path / "store" / db.key).unlink()
    (files / "a.txt").write_text("changed since the backup\n")

    results = verify_backups(fleet)
    assert {(r.store, r.status) for r in results} == {
        ("primary", "Failed"),
        ("secondary", "Success"),
    }

    assert restore(fleet, stamp, ["db", "files"]) == "Success"
    assert digest(files) == original

    # A copy that goes bad is caught by the next verification too.
    fleet.secondary.put_object(tar.key, b"not the artifact")
    results = verify_backups(fleet)
    assert {(r.store, r.status) for r in results} == {
        ("primary", "Failed"),
        ("secondary", "Failed"),
    }
    assert restore(fleet, stamp, ["files"]) == "Failed"  # no good copy left anywhere


def test_the_secondary_keeps_its_own_longer_retention(fleet: Fleet) -> None:
    assert fleet.secondary is not None and fleet.secondary_settings is not None
    fleet = replace(
        fleet,
        secondary_settings=fleet.secondary_settings.model_copy(
            update={
                "retention_keep_hourly": 3,
                "retention_keep_daily": 0,
                "retention_keep_weekly": 0,
                "retention_keep_monthly": 0,
            }
        ),
    )
    start = datetime.now(UTC) - timedelta(hours=10)
    stamps = [take_backup(fleet, moment=start + timedelta(hours=h)) for h in range(5)]
    copy_pending(fleet)
    only_hour = Policy(hourly=1, daily=0, weekly=0, monthly=0)
    (primary,) = apply_retention(fleet, policy=only_hour)
    assert set(primary.delete) == set(stamps[:4])
    (secondary,) = apply_secondary_retention(fleet)
    assert set(secondary.delete) == set(stamps[:2])
    held = {i.key.split("/")[1] for i in fleet.secondary.list("app/") if i.key.endswith(".json")}
    assert held == set(stamps[2:])
    # A backup only the secondary still holds restores from it.
    assert restore(fleet, stamps[2], ["db"]) == "Success"


def test_retention_leaves_the_wal_folder_alone(fleet: Fleet) -> None:
    """`<namespace>/wal/` holds a pitr service's streamed WAL, not backups: neither store's
    retention (nor anything listing `<namespace>/` for timestamps) takes it for one."""
    assert fleet.secondary is not None and fleet.secondary_settings is not None
    keep_one = {"retention_keep_hourly": 1, "retention_keep_daily": 0}
    keep_one |= {"retention_keep_weekly": 0, "retention_keep_monthly": 0}
    fleet = replace(fleet, secondary_settings=fleet.secondary_settings.model_copy(update=keep_one))
    start = datetime.now(UTC) - timedelta(hours=10)
    stamps = [take_backup(fleet, moment=start + timedelta(hours=h)) for h in range(3)]
    copy_pending(fleet)
    wal = [
        "app/wal/db/000000010000000000000003.zst",
        "app/wal/db/000000010000000000000004.partial.zst",
        "app/wal/db/00000002.history.zst",
    ]
    for store in (fleet.store, fleet.secondary):
        for key in wal:
            store.put_object(key, b"wal bytes")
    only_hour = Policy(hourly=1, daily=0, weekly=0, monthly=0)
    (primary,) = apply_retention(fleet, policy=only_hour)
    assert set(primary.delete) == set(stamps[:2])
    (secondary,) = apply_secondary_retention(fleet)
    assert set(secondary.delete) == set(stamps[:2]) and not secondary.keep.get("wal")
    assert not any("wal" in stamp for stamp in [*secondary.keep, *secondary.delete])
    for store in (fleet.store, fleet.secondary):
        assert [info.key for info in store.list("app/wal/")] == sorted(wal)
