"""Authenticated backups, on the local store and a real S3 server, with real sources.

A restore, a verification and a test restore use only a manifest this fleet
wrote (the catalog's digest), or, for a backup found only in the store, one
whose MAC a key of the fleet made; otherwise only with the audited override.
Every forgery below restored the planted data on the old code.
"""

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from tests.health_fleet import make_fleet, take_backup
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.errors import IntegrityError
from workers.fleet import Fleet
from workers.operations.jobs import request_restore
from workers.operations.restore import run_restore
from workers.operations.verify import verify_backups
from workers.repository.manifest import ArtifactEntry, Manifest, artifact_key, manifest_key
from workers.repository.manifest_mac import MacKeys
from workers.sources.base import Source
from workers.sources.directory import DirectorySource
from workers.sources.postgres import PostgresSource
from workers.stores import ObjectStore, make_store
from workers.stores.local import LocalStore
from workers.transfer import crypto
from workers.transfer.upload import store_artifact

pytestmark = pytest.mark.integration
MiB = 1024 * 1024
SIGNING_KEY = "signing-key-" + "5f3c" * 10
FleetMaker = Callable[..., Fleet]


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture(params=["local", "s3"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> FleetMaker:
    """Fleets (each its own catalog and data) that share one store: local, or a real S3."""
    store: ObjectStore
    base = None
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        base = server.make_settings(request.getfixturevalue("s3_bucket"))
        store = make_store(base)
    else:
        store = LocalStore(tmp_path / "store")
        store.init()

    def maker(name: str, **overrides: Any) -> Fleet:
        root = tmp_path / name
        root.mkdir()
        return make_fleet(root, store=store, settings=base, **overrides)

    return maker


def tree(root: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(top, name), root): Path(top, name).read_bytes()
        for top, _dirs, names in os.walk(root)
        for name in names
    }


def files_of(fleet: Fleet) -> Path:
    path = fleet.config.services_of("app")["files"].path
    assert path is not None
    return path


def restore(fleet: Fleet, stamp: str, *, allow_unsigned: bool = False) -> tuple[str, str | None]:
    """Request and run a restore of app/`stamp` into app; its (status, error)."""
    row = request_restore(
        fleet,
        namespace="app",
        timestamp=stamp,
        source_namespace="app",
        requested_by="test",
        enqueue=lambda *_: uuid.uuid4().hex,
        allow_unsigned=allow_unsigned,
    )
    return finish(fleet, row.id)


def finish(fleet: Fleet, restore_id: int) -> tuple[str, str | None]:
    run_restore(fleet, restore_id=restore_id)
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_restore(session, restore_id=restore_id)
        assert row is not None
        return row.status, row.error


def plant(fleet: Fleet, stamp: str, service: str, source: Source) -> ArtifactEntry:
    """An attacker's artifact, plain, stored under the backup's own prefix."""
    key = artifact_key("app", stamp, service, source.format, "zstd")
    stored = store_artifact(
        store=fleet.store, key=key, source=source, part_size=5 * MiB, compression_level=1
    )
    return ArtifactEntry(
        service=service,
        key=key,
        format=source.format,
        compression="zstd",
        encryption=None,
        size=stored.size,
        sha256=stored.sha256,
        source_size=stored.source_size,
        source=stored.facts,
    )


def planted_files(tmp_path: Path) -> DirectorySource:
    root = tmp_path / "planted"
    root.mkdir(exist_ok=True)
    (root / "planted.sh").write_text("#!/bin/sh\necho owned\n")
    return DirectorySource(root)


def read_manifest(fleet: Fleet, stamp: str) -> Manifest:
    with fleet.store.open_read(manifest_key("app", stamp)) as handle:
        return Manifest.from_bytes(handle.read())


def forge(
    fleet: Fleet, stamp: str, *entries: ArtifactEntry, signer_of: Fleet | None = None
) -> None:
    """Swap `entries` into the stored manifest (signed with `signer_of`'s key, if given)."""
    manifest = read_manifest(fleet, stamp)
    swapped = {entry.service for entry in entries}
    kept = [entry for entry in manifest.artifacts if entry.service not in swapped]
    forged = manifest.model_copy(update={"artifacts": [*kept, *entries]})
    signer = MacKeys.from_settings(signer_of.settings).current if signer_of else None
    fleet.store.put_object(manifest_key("app", stamp), forged.to_bytes(signer))


def test_a_manifest_edited_after_the_backup_is_refused_and_the_target_untouched(
    make: FleetMaker, tmp_path: Path, pg_database: str
) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)")
    pg = f'[namespaces.app.services.pg]\nkind = "postgres"\nurl = "{pg_database}"'
    fleet = make("a", extra_services=pg)
    stamp = take_backup(fleet)
    # What an attacker with write access to the bucket prepares: a pg dump that runs its
    # own SQL, and a tree of its own files, with a manifest to match.
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE planted (x text); INSERT INTO planted VALUES ('owned')")
    evil_pg = plant(fleet, stamp, "pg", PostgresSource(pg_database))
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DROP TABLE planted; INSERT INTO orders VALUES (3)")
    (files_of(fleet) / "written after.txt").write_text("must stay")
    before = tree(files_of(fleet))
    # A restore requested while the manifest was still genuine, run after the forgery.
    pending = request_restore(
        fleet,
        namespace="app",
        timestamp=stamp,
        requested_by="test",
        enqueue=lambda *_: uuid.uuid4().hex,
    )
    forge(fleet, stamp, evil_pg, plant(fleet, stamp, "files", planted_files(tmp_path)))

    status, error = finish(fleet, pending.id)

    assert status == "Failed"
    assert f"backup {stamp} of namespace app is not the one this fleet wrote" in (error or "")
    assert tree(files_of(fleet)) == before
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (3,)
        assert conn.execute("SELECT to_regclass('planted')").fetchone() == (None,)
    with pytest.raises(IntegrityError, match="not the one this fleet wrote"):
        restore(fleet, stamp)
    (result,) = verify_backups(fleet, namespace="app", timestamp=stamp)
    assert result.status == "Failed" and "not the one this fleet wrote" in (result.error or "")


def test_a_plain_artifact_swapped_in_under_encryption_is_refused_and_verify_says_so(
    make: FleetMaker, tmp_path: Path
) -> None:
    key = SecretStr(crypto.generate_key())
    fleet = make("a", backup_encryption_key=key)
    stamp = take_backup(fleet)
    (original,) = read_manifest(fleet, stamp).artifacts_of("files")
    assert original.key.endswith(".tar.zst.enc")
    fleet.store.delete(original.key)  # files.tar.zst.enc out, a plain files.tar.zst in
    forge(fleet, stamp, plant(fleet, stamp, "files", planted_files(tmp_path)))
    before = tree(files_of(fleet))

    with pytest.raises(IntegrityError, match="not the one this fleet wrote"):
        restore(fleet, stamp)
    (result,) = verify_backups(fleet, namespace="app", timestamp=stamp)
    assert result.status == "Failed"
    assert tree(files_of(fleet)) == before

    # A holder of the key could sign it; a fleet that never saw the backup (another
    # cluster, same key) still refuses an unencrypted artifact, unless told otherwise.
    forge(fleet, stamp, *read_manifest(fleet, stamp).artifacts_of("files"), signer_of=fleet)
    other = make("b", backup_encryption_key=key)
    with pytest.raises(IntegrityError, match=r"unencrypted artifact .* is refused"):
        restore(other, stamp)
    assert [r.status for r in verify_backups(other, namespace="app", timestamp=stamp)] == ["Failed"]
    status, error = restore(other, stamp, allow_unsigned=True)
    assert status == "Success"
    assert error is not None and error.startswith("allowUnsigned requested by test")
    assert "unencrypted artifact" in error
    assert sorted(tree(files_of(other))) == ["planted.sh"]


def test_a_store_only_backup_needs_a_valid_mac_or_the_audited_override(
    make: FleetMaker,
) -> None:
    primary = make("a", backup_signing_key=SecretStr(SIGNING_KEY))
    stamp = take_backup(primary)
    wanted = tree(files_of(primary))

    # Another cluster holding the key, with an empty catalog: the MAC is enough.
    standby = make("b", backup_signing_key=SecretStr(SIGNING_KEY))
    assert tree(files_of(standby)) != wanted
    assert restore(standby, stamp) == ("Success", None)
    assert tree(files_of(standby)) == wanted
    assert [r.status for r in verify_backups(standby, namespace="app", timestamp=stamp)] == [
        "Success"
    ]

    # No key, or another key: refused, and the target stays as it was.
    for name, settings in (("c", {}), ("d", {"backup_signing_key": SecretStr("x" * 40)})):
        stranger = make(name, **settings)
        before = tree(files_of(stranger))
        with pytest.raises(IntegrityError, match=f"backup {stamp} of namespace app cannot be"):
            restore(stranger, stamp)
        assert tree(files_of(stranger)) == before
    # With the override it goes ahead, and says so on the restore row.
    status, error = restore(stranger, stamp, allow_unsigned=True)
    assert status == "Success" and tree(files_of(stranger)) == wanted
    assert error is not None and error.startswith("allowUnsigned requested by test")
    assert "carries no valid MAC" in error

    # A signed manifest changed afterwards no longer matches its MAC.
    manifest = read_manifest(primary, stamp)
    primary.store.put_object(
        manifest_key("app", stamp),
        manifest.to_bytes().replace(manifest.finished_at.encode(), b"2001-01-01T00:00:00+00:00"),
    )
    late = make("e", backup_signing_key=SecretStr(SIGNING_KEY))
    with pytest.raises(IntegrityError, match="cannot be authenticated"):
        restore(late, stamp)


def test_artifact_keys_must_lie_under_the_backups_own_prefix(
    make: FleetMaker, tmp_path: Path
) -> None:
    fleet = make("a", backup_signing_key=SecretStr(SIGNING_KEY))
    victim = take_backup(fleet, moment=datetime(2026, 1, 1, tzinfo=UTC))
    (theirs,) = read_manifest(fleet, victim).artifacts_of("files")
    # A second backup whose signed manifest points at the first one's (another tenant's) object.
    stamp = take_backup(fleet, moment=datetime(2026, 1, 2, tzinfo=UTC))
    forge(fleet, stamp, theirs, signer_of=fleet)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None
        session.delete(backup)  # found only in the store: the MAC holds, the key does not
    with pytest.raises(IntegrityError, match=f"names an object outside app/{stamp}/"):
        restore(fleet, stamp, allow_unsigned=True)


def test_a_backup_recorded_before_manifest_digests_is_checked_against_its_artifacts(
    make: FleetMaker, tmp_path: Path
) -> None:
    fleet = make("a")
    stamp = take_backup(fleet)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None and backup.manifest_sha256 is not None
        with fleet.store.open_read(manifest_key("app", stamp)) as handle:
            assert backup.manifest_sha256 == hashlib.sha256(handle.read()).hexdigest()
        backup.manifest_sha256 = None  # as a catalog from before migration 0007 holds it
    assert restore(fleet, stamp) == ("Success", None)

    forge(fleet, stamp, plant(fleet, stamp, "files", planted_files(tmp_path)))
    with pytest.raises(IntegrityError, match="other artifacts than the catalog recorded"):
        restore(fleet, stamp, allow_unsigned=True)
