"""A backup process killed mid-upload: the next run resumes it, and nothing is left over.

A real process uploads a directory to a real S3 server or Azurite, slowly
(a bandwidth limit), and is SIGKILLed once a few parts are in. Then the
backup runs again, as a redelivered task would: it must upload only the
missing parts, end with bytes that match, and leave no unfinished upload.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.plugins.object_stores import AzuriteServer, S3Server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import SUCCESS, Artifact, UploadPart
from workers.fleet import Fleet, build_fleet
from workers.operations.backup import run_backup
from workers.operations.jobs import read_manifest
from workers.settings import load_settings
from workers.sources.directory import DirectorySource
from workers.stores.base import ObjectStore, UploadedPart
from workers.transfer.download import restore_artifacts

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MiB = 1024 * 1024


@dataclass
class Case:
    env: dict[str, str]
    data: Path
    catalog: str


def store_env(kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return {
            "OBJECT_STORE_LOCATION_TYPE": "s3",
            "AWS_S3_BUCKET_NAME": request.getfixturevalue("s3_bucket"),
            "AWS_S3_ENDPOINT_URL": server.endpoint,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_REGION": "us-west-2",
            "AWS_ACCESS_KEY": server.access_key,
            "AWS_SECRET_KEY": server.secret_key,
        }
    azurite: AzuriteServer = request.getfixturevalue("azurite_server")
    return {
        "OBJECT_STORE_LOCATION_TYPE": "azure-blob-storage",
        "AZURE_STORAGE_ACCOUNT_NAME": azurite.account,
        "AZURE_STORAGE_ACCOUNT_SERVICE_URL": azurite.service_url,
        "AZURE_STORAGE_CONTAINER_NAME": request.getfixturevalue("azure_container"),
        "AZURE_STORAGE_ACCESS_KEY": azurite.key,
    }


@pytest.fixture(params=["s3", "azure"])
def case(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Case]:
    data = tmp_path / "data"
    data.mkdir()
    for index in range(6):  # 36 MiB that does not compress: 8 parts of 5 MiB
        (data / f"blob-{index}.bin").write_bytes(os.urandom(6 * MiB))
    config = tmp_path / "backfleet.toml"
    config.write_text(f'[services.files]\nkind = "directory"\npath = "{data}"\n')
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(catalog)
    env = {
        "DATABASE_URL": catalog,
        "BACKFLEET_CONFIG": str(config),
        "BACKUP_PART_SIZE": str(5 * MiB),
        "BACKUP_UPLOAD_CONCURRENCY": "1",
        "BACKUP_RETRY_BASE_DELAY": "0.05",
        **store_env(request.param, request),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield Case(env=env, data=data, catalog=catalog)
    dispose_engines()


class CountingStore:
    """Wraps a store and counts the parts actually sent."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner, self.sent = inner, 0

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> UploadedPart:
        self.sent += 1
        return self.inner.upload_part(key, upload_id, number, data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parts_recorded(catalog: str) -> int:
    with session_scope(catalog) as session:
        return int(session.scalar(select(func.count()).select_from(UploadPart)) or 0)


def test_a_killed_upload_is_resumed_and_nothing_is_left(case: Case) -> None:
    with session_scope(case.catalog) as session:
        timestamp = queries.create_backup(
            session, namespace="app", services=["files"], only_config=False, trigger="api"
        ).timestamp
    script = (
        "from workers.operations.backup import run_backup; "
        "from workers.fleet import current_fleet; "
        f"run_backup(current_fleet(), namespace='app', timestamp='{timestamp}')"
    )
    slow = {**os.environ, **case.env, "BACKUP_MAX_BANDWIDTH": "6MiB"}  # ~6 s for 36 MiB
    worker = subprocess.Popen([sys.executable, "-c", script], env=slow)
    try:
        deadline = time.monotonic() + 60
        while parts_recorded(case.catalog) < 3:
            assert worker.poll() is None, "the backup ended before it could be killed"
            assert time.monotonic() < deadline, "no parts were recorded in time"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)

    fleet = build_fleet(load_settings())
    assert len(list(fleet.store.list_uploads(""))) == 1  # the dead worker's upload
    recorded = parts_recorded(case.catalog)

    counting = CountingStore(fleet.store)
    rerun = Fleet(settings=fleet.settings, config=fleet.config, store=counting)  # type: ignore[arg-type]
    outcome = run_backup(rerun, namespace="app", timestamp=timestamp)
    assert outcome.status == SUCCESS, outcome.error

    with session_scope(case.catalog) as session:
        artifact = session.scalars(select(Artifact)).one()
        total_parts = -(-(artifact.size or 0) // (5 * MiB))
    assert counting.sent == total_parts - recorded  # only the missing parts were sent
    assert list(fleet.store.list_uploads("")) == []

    manifest = read_manifest(fleet, namespace="app", timestamp=timestamp)
    target = case.data.parent / "restored"
    restore_artifacts(
        store=fleet.store, entries=manifest.artifacts_of("files"), source=DirectorySource(target)
    )
    for original in sorted(case.data.iterdir()):
        assert (target / original.name).read_bytes() == original.read_bytes()
