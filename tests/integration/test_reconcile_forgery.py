"""The reconciler must not launder a manifest an attacker with bucket write put in the store.

A backup whose worker died after (or while) storing its artifacts stays Running;
the reconciler settles it from the store. If it takes whatever manifest it finds
there and copies it into the catalog (artifact rows, digest), the next restore
authenticates the forged manifest against the catalog the reconciler just wrote.
Real Redis (locks, broker), SQLite catalog, local store, real sources.
"""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import select

from tests.health_fleet import make_fleet, take_backup
from tests.integration.test_authenticated_backups import (
    SIGNING_KEY,
    files_of,
    forge,
    plant,
    planted_files,
    read_manifest,
    tree,
)
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, RUNNING, SUCCESS, Artifact, Backup
from workers.errors import IntegrityError
from workers.fleet import Fleet
from workers.operations.jobs import request_restore
from workers.operations.reconcile import reconcile
from workers.operations.restore import run_restore

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def broker(redis_server: Any) -> str:
    """A Redis database of its own: empty queues, no lock held."""
    url = str(redis_server.url).rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    return url


def big_files(fleet: Fleet) -> None:
    """Enough bytes for several volumes of BACKUP_VOLUME_SIZE=1MiB."""
    for name in ("big1.bin", "sub/big2.bin"):
        (files_of(fleet) / name).write_bytes(os.urandom(MiB + 1000))


def stuck(fleet: Fleet, stamp: str, *, forget: str | None = None) -> None:
    """The backup as a worker killed before its last catalog write leaves it: Running, no
    digest; with `forget`, that service's artifact was never recorded as stored."""
    with session_scope(fleet.settings.database_url) as session:
        row = session.scalars(select(Backup).where(Backup.timestamp == stamp)).one()
        row.status, row.finished_at, row.manifest_sha256 = RUNNING, None, None
        for artifact in row.artifacts:
            if artifact.service == forget:
                artifact.status, artifact.sha256 = RUNNING, None


def settle(fleet: Fleet) -> tuple[str, str]:
    (outcome,) = reconcile(fleet, confirm_after=0)
    return outcome.status, outcome.reason


def restore(fleet: Fleet, stamp: str) -> tuple[str, str | None]:
    row = request_restore(
        fleet,
        namespace="app",
        timestamp=stamp,
        requested_by="test",
        enqueue=lambda *_: uuid.uuid4().hex,
    )
    run_restore(fleet, restore_id=row.id)
    with session_scope(fleet.settings.database_url) as session:
        done = queries.get_restore(session, restore_id=row.id)
        assert done is not None
        return done.status, done.error


@pytest.mark.parametrize("signed", [False, True])
def test_a_forged_artifact_of_a_stuck_backup_is_not_settled_into_the_catalog(
    tmp_path: Path, broker: str, signed: bool
) -> None:
    keys: dict[str, Any] = {"backup_signing_key": SecretStr(SIGNING_KEY)} if signed else {}
    fleet = make_fleet(tmp_path, broker_url=broker, **keys)
    stamp = take_backup(fleet)
    stuck(fleet, stamp, forget="files")  # killed while `files` was being stored
    # The attacker stores its own `files` artifact and a manifest that lists it.
    forge(fleet, stamp, plant(fleet, stamp, "files", planted_files(tmp_path)))
    before = tree(files_of(fleet))

    status, reason = settle(fleet)

    assert status == FAILED, reason
    assert "cannot be authenticated" in reason
    with session_scope(fleet.settings.database_url) as session:
        row = session.scalars(select(Backup).where(Backup.timestamp == stamp)).one()
        assert row.manifest_sha256 is None
        files = session.scalars(select(Artifact).where(Artifact.service == "files")).one()
        assert files.status != SUCCESS and files.sha256 is None  # not the attacker's
    with pytest.raises(Exception, match="only a successful backup can be restored"):
        restore(fleet, stamp)
    assert tree(files_of(fleet)) == before


def test_a_stuck_backups_manifest_that_drops_a_volume_is_not_vouched_for(
    tmp_path: Path, broker: str
) -> None:
    fleet = make_fleet(tmp_path, broker_url=broker, backup_volume_size=MiB)
    big_files(fleet)
    stamp = take_backup(fleet)
    volumes = read_manifest(fleet, stamp).artifacts_of("files")
    assert len(volumes) >= 2
    stuck(fleet, stamp)
    # Every artifact it lists was recorded, but the last volume (its files) is left out.
    manifest = read_manifest(fleet, stamp)
    cut = [e for e in manifest.artifacts if (e.service, e.volume) != ("files", len(volumes))]
    fleet.store.put_object(
        f"app/{stamp}/manifest.json", manifest.model_copy(update={"artifacts": cut}).to_bytes()
    )

    status, reason = settle(fleet)

    assert status == FAILED, reason
    with session_scope(fleet.settings.database_url) as session:
        row = session.scalars(select(Backup).where(Backup.timestamp == stamp)).one()
        assert row.manifest_sha256 is None
        assert len([a for a in row.artifacts if a.service == "files"]) == len(volumes)


def test_a_stuck_backups_own_manifest_is_settled_signed_or_not(tmp_path: Path, broker: str) -> None:
    signed: dict[str, Any] = {"backup_signing_key": SecretStr(SIGNING_KEY)}
    for name, keys in (("plain", {}), ("signed", signed)):
        root = tmp_path / name
        root.mkdir()
        fleet = make_fleet(root, broker_url=broker, backup_volume_size=MiB, **keys)
        big_files(fleet)
        stamp = take_backup(fleet)
        stuck(fleet, stamp)
        status, reason = settle(fleet)
        assert status == SUCCESS, reason
        (files_of(fleet) / "a.txt").write_text("changed\n")
        assert restore(fleet, stamp) == (SUCCESS, None)
        assert (files_of(fleet) / "a.txt").read_text() == "alpha\n"
        dispose_engines()


def test_a_signed_manifest_of_a_stuck_backup_with_lost_artifact_rows_is_settled(
    tmp_path: Path, broker: str
) -> None:
    """The MAC vouches for a manifest whose artifact rows the catalog never got."""
    fleet = make_fleet(tmp_path, broker_url=broker, backup_signing_key=SecretStr(SIGNING_KEY))
    stamp = take_backup(fleet)
    stuck(fleet, stamp, forget="files")
    assert settle(fleet)[0] == SUCCESS
    assert restore(fleet, stamp) == (SUCCESS, None)
    with pytest.raises(IntegrityError):  # and a forged one is still refused afterwards
        forge(fleet, stamp, plant(fleet, stamp, "files", planted_files(tmp_path)))
        restore(fleet, stamp)
