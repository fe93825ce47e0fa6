"""Test restores of SQLite and directory backups into scratch targets (PostgreSQL: integration)."""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import workers.operations.verdicts
from tests.health_fleet import capture_system_events, make_fleet, rewrite_manifest, take_backup
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert, Verification
from workers.cli import main
from workers.operations import restore_test as rt
from workers.repository.manifest import Manifest, manifest_key
from workers.sources.directory import check as directory_check


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return capture_system_events(monkeypatch, workers.operations.verdicts)


def scratch_dirs(work: Path) -> list[str]:
    return sorted(p.name for p in work.iterdir() if p.name.startswith("backfleet-restore-test-"))


def test_sqlite_and_directory_restore_into_scratch_and_match(
    tmp_path: Path, events: list[dict[str, Any]]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    fleet = make_fleet(tmp_path, backfleet_work_dir=work, backup_volume_size=1 << 20)
    data = tmp_path / "data" / "files"
    for i in range(3):  # three volumes of ~0.6 MiB files
        (data / f"big{i}.bin").write_bytes(os.urandom(600_000))
    os.link(data / "a.txt", data / "hard.txt")
    stamp = take_backup(fleet)
    with fleet.store.open_read(manifest_key("app", stamp)) as handle:
        manifest = Manifest.from_bytes(handle.read())
    assert len(manifest.artifacts_of("files")) >= 3
    before = sorted(os.listdir(data))

    (result,) = rt.run_restore_tests(fleet)
    assert (result.status, result.tested, result.error) == ("Success", ["db", "files"], None)
    assert sorted(os.listdir(data)) == before  # the live data is never touched
    assert scratch_dirs(work) == []  # the scratch targets are gone
    with session_scope(fleet.settings.database_url) as session:
        row = session.query(Verification).one()
        assert (row.kind, row.status, row.artifacts) == ("restore", "Success", 2)
    assert events[-1]["params"]["check"] == "test restore"


def test_a_tree_that_does_not_restore_as_recorded_fails_and_is_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    fleet = make_fleet(tmp_path, backfleet_work_dir=work)
    stamp = take_backup(fleet)
    real = directory_check.tree_facts

    def one_file_changed(root: Path, entries: list[Any], algorithm: str) -> list[Any]:
        (root / "a.txt").write_text("ALPHA\n")  # same size, different content
        return real(root, entries, algorithm)

    monkeypatch.setattr(directory_check, "tree_facts", one_file_changed)
    (result,) = rt.run_restore_tests(fleet)
    assert result.status == "Failed"
    assert "files: volume 1: the restored files' names, sizes or contents differ" in (
        result.error or ""
    )
    assert scratch_dirs(work) == []
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None and backup.verified == "Failed"
        conditions = sorted(row.condition for row in session.query(Alert))
        # The backup's verdict, as before, and the service's drill (its recovery evidence).
        assert conditions == ["drill.failed:app:files", f"verify.failed:app:{stamp}:restore"]


@pytest.mark.parametrize("tampered", [False, True])
def test_a_manifest_from_before_blake3_is_checked_with_sha256(
    tmp_path: Path, events: list[dict[str, Any]], tampered: bool
) -> None:
    fleet = make_fleet(tmp_path)
    stamp = take_backup(fleet)
    key = manifest_key("app", stamp)
    with fleet.store.open_read(key) as handle:
        manifest = Manifest.from_bytes(handle.read())
    (entry,) = manifest.artifacts_of("files")
    assert directory_check.recorded_file_hash(entry.source) == "blake3"
    # What a backup written before BLAKE3 recorded: the same digest, over SHA-256s.
    ((files, size, digest),) = directory_check.tree_facts(
        tmp_path / "data" / "files", [entry.source], "sha256"
    )
    assert (files, size) == (entry.source["files"], entry.source["bytes"])
    del entry.source["files_blake3"]
    entry.source["files_sha256"] = ("0" * 64) if tampered else digest
    rewrite_manifest(fleet, manifest)

    (result,) = rt.run_restore_tests(fleet)
    assert result.status == ("Failed" if tampered else "Success"), result.error


def test_sqlite_row_counts_that_differ_fail(tmp_path: Path, events: list[dict[str, Any]]) -> None:
    fleet = make_fleet(tmp_path)
    stamp = take_backup(fleet)
    # A manifest that recorded one row more than the database had.
    key = manifest_key("app", stamp)
    with fleet.store.open_read(key) as handle:
        manifest = Manifest.from_bytes(handle.read())
    entry = manifest.artifact("db")
    assert entry is not None
    entry.source["row_counts"]["nodes"] += 1
    rewrite_manifest(fleet, manifest)
    (result,) = rt.run_restore_tests(fleet)
    assert result.status == "Failed"
    assert "nodes: 201 recorded, 200 restored" in (result.error or "")


def test_the_cli_runs_a_test_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = make_fleet(tmp_path)
    stamp = take_backup(fleet)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    result = CliRunner().invoke(main, ["test-restore"])
    assert result.exit_code == 0, result.output
    assert f"Success  app/{stamp} (tested: db, files)" in result.output
    # Each service's drill: its duration against its RTO, and the counts found.
    assert re.search(r"db: [0-9.]+ s \(RTO 4 h met\), counts \{'nodes': 200\}", result.output)
    again = CliRunner().invoke(main, ["test-restore"])  # drilled just now: none is due
    assert again.exit_code == 0 and "no drill was due" in again.output
