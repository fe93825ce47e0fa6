"""A large directory goes in volumes; a redelivered backup keeps the stored ones."""

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import FAILED, RUNNING, SUCCESS
from workers.errors import PermanentError
from workers.fleet import Fleet
from workers.operations.backup import run_backup
from workers.operations.jobs import read_manifest, request_restore
from workers.operations.restore import run_restore
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.sources.directory import DirectorySource
from workers.stores.base import UploadedPart
from workers.stores.local import LocalStore
from workers.transfer.download import restore_artifacts

pytestmark = pytest.mark.integration
MiB = 1024 * 1024


class CountingStore(LocalStore):
    """Records the uploads started, how many ran at once, and fails a chosen one."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.created: list[str] = []
        self.open, self.peak = 0, 0
        self.lock = threading.Lock()
        self.failing = ""  # a key whose parts fail
        self.together = 0  # parts wait (up to 5 s) until this many uploads are open

    def create_upload(self, key: str) -> str:
        with self.lock:
            self.created.append(key)
            self.open += 1
            self.peak = max(self.peak, self.open)
        return super().create_upload(key)

    def upload_part(self, key: str, upload_id: str, number: int, data: Any) -> UploadedPart:
        threading.Event().wait(0.02)  # long enough for volumes to overlap
        deadline = time.monotonic() + 5
        while self.peak < self.together and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        if key.endswith(self.failing or "\0"):
            raise PermanentError(f"refused {key}")
        return super().upload_part(key, upload_id, number, data)

    def complete_upload(
        self, key: str, upload_id: str, parts: Any, *, sha256: str | None = None
    ) -> None:
        super().complete_upload(key, upload_id, parts, sha256=sha256)
        with self.lock:
            self.open -= 1

    def abort_upload(self, key: str, upload_id: str) -> None:
        super().abort_upload(key, upload_id)
        with self.lock:
            self.open -= 1


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for index in range(9):  # three files of 300 KiB fit a 1 MiB volume: three volumes
        (data / "sub" / f"file-{index}").write_bytes(os.urandom(300 * 1024))
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    yield Fleet(
        settings=Settings(database_url=url, backup_volume_size=MiB, backup_part_size=MiB),
        config=parse_fleet_config(f'[services.files]\nkind = "directory"\npath = "{data}"\n'),
        store=CountingStore(tmp_path / "store"),
    )
    dispose_engines()


def with_settings(fleet: Fleet, **changes: Any) -> Fleet:
    settings = fleet.settings.model_copy(update=changes)
    return Fleet(settings=settings, config=fleet.config, store=fleet.store)


def new_backup(fleet: Fleet) -> str:
    with session_scope(fleet.settings.database_url) as session:
        return queries.create_backup(
            session, namespace="app", services=["files"], only_config=False, trigger="api"
        ).timestamp


def test_volumes_are_separate_artifacts_restored_as_one_tree(fleet: Fleet, tmp_path: Path) -> None:
    timestamp = new_backup(fleet)
    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS
    manifest = read_manifest(fleet, namespace="app", timestamp=timestamp)
    entries = manifest.artifacts_of("files")
    assert [entry.volume for entry in entries] == [1, 2, 3]
    assert entries[0].key.endswith("/files.tar.zst")
    assert entries[1].key.endswith("/files.v0002.tar.zst")
    assert entries[-1].source["final"] is True

    target = tmp_path / "restored"
    restore_artifacts(store=fleet.store, entries=entries, source=DirectorySource(target))
    for original in sorted((tmp_path / "data" / "sub").iterdir()):
        assert (target / "sub" / original.name).read_bytes() == original.read_bytes()


def test_a_redelivered_backup_keeps_the_volumes_already_stored(fleet: Fleet) -> None:
    timestamp = new_backup(fleet)
    run_backup(fleet, namespace="app", timestamp=timestamp)
    store: Any = fleet.store
    assert len(store.created) == 4  # three volumes and the manifest

    # As if the worker died after the second volume: the rest is undone.
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None
        backup.status = RUNNING
        third = next(a for a in backup.artifacts if a.volume == 3)
        session.delete(third)
    store.created.clear()

    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS
    assert [key.rsplit("/", 1)[1] for key in store.created] == [
        "files.v0003.tar.zst",
        "manifest.json",
    ]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_volumes_upload_side_by_side_and_come_back_in_order(
    fleet: Fleet, tmp_path: Path, concurrency: int
) -> None:
    fleet = with_settings(fleet, backup_volume_concurrency=concurrency)
    store: Any = fleet.store
    store.together = concurrency  # a loaded machine must not let one finish first
    timestamp = new_backup(fleet)
    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS
    assert store.peak == concurrency and store.open == 0
    entries = read_manifest(fleet, namespace="app", timestamp=timestamp).artifacts_of("files")
    assert [entry.volume for entry in entries] == [1, 2, 3]
    for before, after in itertools.pairwise(entries):  # each starts where the last ended
        assert after.source["after"] == before.source["last"]
    target = tmp_path / "restored"
    restore_artifacts(store=fleet.store, entries=entries, source=DirectorySource(target))
    assert sorted(os.listdir(target / "sub")) == [f"file-{index}" for index in range(9)]


def test_a_failed_volume_stops_the_others_and_leaves_no_upload(fleet: Fleet) -> None:
    store: Any = fleet.store
    store.failing = "files.tar.zst"  # the first volume; the second runs beside it
    timestamp = new_backup(fleet)

    outcome = run_backup(fleet, namespace="app", timestamp=timestamp)

    assert outcome.status == FAILED and "refused" in (outcome.error or "")
    assert store.open == 0 and list(store.list_uploads("app/")) == []
    assert not store.exists(f"app/{timestamp}/manifest.json")
    # Whether a third volume started depends on which of the first two ended first
    # (volumes take whichever place frees first); that none starts once one has failed
    # is tests/unit/test_volume_backup.py's, where the timing is fixed.


def test_a_volume_stored_for_entries_no_longer_its_own_is_redone(
    fleet: Fleet, tmp_path: Path
) -> None:
    timestamp = new_backup(fleet)
    run_backup(fleet, namespace="app", timestamp=timestamp)
    store: Any = fleet.store
    # As if the worker died with volume 2 unfinished and volume 3 stored beside it;
    # then file-3 grew, so volume 2 now ends sooner and volume 3 starts sooner.
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None
        backup.status = RUNNING
        session.delete(next(a for a in backup.artifacts if a.volume == 2))
    data = tmp_path / "data" / "sub"
    (data / "file-3").write_bytes(os.urandom(600 * 1024))
    store.created.clear()

    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS

    created = [key.rsplit("/", 1)[1] for key in store.created]
    # Volume 1 is kept; 2 and 3 are done again (side by side: in either order).
    assert "files.tar.zst" not in created
    assert {"files.v0002.tar.zst", "files.v0003.tar.zst"} <= set(created), created
    entries = read_manifest(fleet, namespace="app", timestamp=timestamp).artifacts_of("files")
    target = tmp_path / "restored"
    restore_artifacts(store=fleet.store, entries=entries, source=DirectorySource(target))
    for original in sorted(data.iterdir()):  # every file once, as it is now
        assert (target / "sub" / original.name).read_bytes() == original.read_bytes()


def test_a_service_whose_pre_hook_runs_again_is_dumped_whole_from_the_new_state(
    fleet: Fleet, tmp_path: Path
) -> None:
    """`pre` makes a new state each time it runs (a snapshot); a redelivery runs it again,
    so the volumes the lost attempt stored (read from the old state) are dumped again:
    kept, they would restore beside the new ones as a copy of two points in time."""
    data = tmp_path / "data"
    snapshot = (  # every file new, of the same size, so the volumes cover the same files
        f"n=$(cat {tmp_path}/generation 2>/dev/null || echo 0); n=$((n + 1)); "
        f"echo $n > {tmp_path}/generation; "
        f'for f in {data}/sub/*; do head -c 307200 /dev/urandom > "$f"; done'
    )
    config = parse_fleet_config(
        f'[services.files]\nkind = "directory"\npath = "{data}"\n'
        f"[services.files.hooks]\npre = {json.dumps(['sh', '-c', snapshot])}\n"
    )
    fleet = Fleet(settings=fleet.settings, config=config, store=fleet.store)
    timestamp = new_backup(fleet)
    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS
    # As if the worker died after the second volume: the third is undone.
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=timestamp)
        assert backup is not None
        backup.status = RUNNING
        session.delete(next(a for a in backup.artifacts if a.volume == 3))
    store: Any = fleet.store
    store.created.clear()

    assert run_backup(fleet, namespace="app", timestamp=timestamp).status == SUCCESS

    assert (tmp_path / "generation").read_text() == "2\n"  # `pre` ran again
    created = sorted(key.rsplit("/", 1)[1] for key in store.created)
    volumes = ["files.tar.zst", "files.v0002.tar.zst", "files.v0003.tar.zst"]
    assert created == [*volumes, "manifest.json"]  # every volume dumped again
    entries = read_manifest(fleet, namespace="app", timestamp=timestamp).artifacts_of("files")
    assert [entry.volume for entry in entries] == [1, 2, 3]
    target = tmp_path / "restored"
    restore_artifacts(store=fleet.store, entries=entries, source=DirectorySource(target))
    for original in sorted((data / "sub").iterdir()):  # every file as the second `pre` made it
        assert (target / "sub" / original.name).read_bytes() == original.read_bytes()


def test_a_restore_records_its_progress(fleet: Fleet, tmp_path: Path) -> None:
    timestamp = new_backup(fleet)
    run_backup(fleet, namespace="app", timestamp=timestamp)
    restore = request_restore(
        fleet, namespace="app", timestamp=timestamp, enqueue=lambda *args: "task-1"
    )
    assert run_restore(fleet, restore_id=restore.id) == SUCCESS
    manifest = read_manifest(fleet, namespace="app", timestamp=timestamp)
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_restore(session, restore_id=restore.id)
        assert row is not None
        assert row.bytes_total == sum(entry.size for entry in manifest.artifacts) > 0
        assert row.bytes_done == row.bytes_total
