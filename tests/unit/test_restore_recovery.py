"""Crash safety of restores: the atomic exchange, its fallback, the recovery step, the gate."""

import ctypes
import errno
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import stored_entry
from workers.fleet import Fleet
from workers.operations.locks import LockLost
from workers.operations.recovery import recover_targets
from workers.repository.manifest import artifact_key
from workers.services_config import parse_fleet_config
from workers.settings import Settings
from workers.sources.command import CommandSource
from workers.sources.directory import DirectorySource
from workers.sources.directory import swap as directory_swap
from workers.sources.directory.swap import recover_target
from workers.sources.sqlite import SqliteSource
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifacts

pytestmark = pytest.mark.timeout(60)


def make_tree(root: Path, text: str) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(text)
    (root / "sub" / "b.txt").write_text(text * 2)


def contents(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# --- recover_target: what a killed directory restore left ---
def test_a_target_renamed_aside_by_a_killed_swap_is_put_back_and_staging_removed(
    tmp_path: Path,
) -> None:
    target = tmp_path / "files"
    make_tree(tmp_path / ".files.backfleet-old-0123abcd", "old")  # renamed aside, then killed
    make_tree(tmp_path / ".files.backfleet-restore-x1y2", "new")  # verified, never swapped in
    recover_target(target)
    assert contents(target) == {"a.txt": "old", "sub/b.txt": "oldold"}
    assert names(tmp_path) == ["files"]


def test_leftovers_beside_a_present_target_are_removed_and_the_target_kept(
    tmp_path: Path,
) -> None:
    target = tmp_path / "files"
    make_tree(target, "current")
    make_tree(tmp_path / ".files.backfleet-restore-aaaa", "old after an exchange")
    make_tree(tmp_path / ".files.backfleet-old-bbbb", "old, removal cut short")
    partial = tmp_path / ".files.backfleet-restore-cccc"
    (partial / "ro").mkdir(parents=True)
    (partial / "ro" / "x").write_text("x")
    os.chmod(partial / "ro", 0o500)  # a restored read-only folder is still removed
    make_tree(tmp_path / ".files.other.backfleet-restore-dddd", "another target's")
    make_tree(tmp_path / "files2", "a sibling")
    recover_target(target)
    assert contents(target) == {"a.txt": "current", "sub/b.txt": "currentcurrent"}
    assert names(tmp_path) == [".files.other.backfleet-restore-dddd", "files", "files2"]


def test_a_new_target_whose_first_restore_was_killed_stays_absent(tmp_path: Path) -> None:
    make_tree(tmp_path / ".files.backfleet-restore-x", "partial")
    recover_target(tmp_path / "files")
    assert names(tmp_path) == []
    recover_target(tmp_path / "nowhere" / "files")  # no parent: nothing to do


# --- the swap ---
def restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, exchange: bool) -> Path:
    source_root = tmp_path / "source"
    make_tree(source_root, "new")
    store = MemoryStore()
    key = artifact_key("app", "2024-01-02t03-04-05", "files", "tar", "zstd")
    entry = stored_entry(store, DirectorySource(source_root), key=key, service="files")
    target = tmp_path / "target" / "files"
    make_tree(target, "old")
    if not exchange:
        monkeypatch.setattr(directory_swap, "exchange", lambda first, second: False)
    restore_artifacts(store=store, entries=[entry], source=DirectorySource(target))
    return target


@pytest.mark.parametrize("exchange", [True, False])
def test_both_swaps_leave_the_restored_tree_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    target = restored(tmp_path, monkeypatch, exchange=exchange)
    assert contents(target) == {"a.txt": "new", "sub/b.txt": "newnew"}
    assert names(target.parent) == ["files"]


def test_the_exchange_is_used_where_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path]] = []
    real = directory_swap.exchange

    def recorded(first: Path, second: Path) -> bool:
        calls.append((first, second))
        return real(first, second)

    monkeypatch.setattr(directory_swap, "exchange", recorded)
    renames: list[Any] = []
    monkeypatch.setattr(os, "rename", lambda *args: renames.append(args))  # must not be needed
    target = restored(tmp_path, monkeypatch, exchange=True)
    assert len(calls) == 1 and calls[0][1] == target and renames == []
    assert contents(target) == {"a.txt": "new", "sub/b.txt": "newnew"}


def test_an_unsupported_exchange_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    def unsupported(*args: Any) -> int:
        ctypes.set_errno(errno.EINVAL)  # e.g. a filesystem without RENAME_EXCHANGE
        return -1

    monkeypatch.setattr(directory_swap, "_renameat2", lambda: unsupported)
    assert directory_swap.exchange(tmp_path / "a", tmp_path / "b") is False
    monkeypatch.setattr(directory_swap, "_renameat2", lambda: None)  # a libc without renameat2
    assert directory_swap.exchange(tmp_path / "a", tmp_path / "b") is False


def test_an_exchange_error_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError):
        directory_swap.exchange(tmp_path / "a", tmp_path / "missing")


# --- the commit gate (the namespace lock) ---
def test_a_failed_gate_stops_a_directory_restore_before_the_swap(tmp_path: Path) -> None:
    source_root = tmp_path / "source"
    make_tree(source_root, "new")
    store = MemoryStore()
    key = artifact_key("app", "2024-01-02t03-04-05", "files", "tar", "zstd")
    entry = stored_entry(store, DirectorySource(source_root), key=key, service="files")
    target = tmp_path / "target" / "files"
    make_tree(target, "old")

    def lost() -> None:
        raise LockLost("the lock of namespace app was lost: taken by backup x")

    with pytest.raises(LockLost):
        restore_artifacts(
            store=store, entries=[entry], source=DirectorySource(target), before_commit=lost
        )
    assert contents(target) == {"a.txt": "old", "sub/b.txt": "oldold"}
    assert names(target.parent) == ["files"]


# --- SQLite and command leftovers ---
def test_sqlite_recovery_removes_only_its_own_staged_copies(tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    with sqlite3.connect(target) as db:
        db.execute("CREATE TABLE t (x)")
    staged = ".app.db.backfleet-restore-k1.sqlite"
    for name in (staged, f"{staged}-journal"):
        (tmp_path / name).write_bytes(b"partial")
    (tmp_path / ".other.db.backfleet-restore-k2.sqlite").write_bytes(b"not ours")
    SqliteSource(target).recover()
    assert names(tmp_path) == [".other.db.backfleet-restore-k2.sqlite", "app.db"]
    SqliteSource(tmp_path / "gone" / "x.db").recover()  # no folder: nothing to do


def test_command_recovery_removes_only_its_own_staged_file(tmp_path: Path) -> None:
    mine = CommandSource(["dump"], ["load", "--db", "a"], format="dump", work_dir=tmp_path)
    other = CommandSource(["dump"], ["load", "--db", "b"], format="dump", work_dir=tmp_path)
    (tmp_path / f"{mine._staging_prefix()}k1.dump").write_bytes(b"staged")
    (tmp_path / f"{other._staging_prefix()}k2.dump").write_bytes(b"another service's")
    mine.recover()
    assert names(tmp_path) == [f"{other._staging_prefix()}k2.dump"]


def test_recover_targets_reports_a_target_it_cannot_fix_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, db = tmp_path / "files", tmp_path / "app.db"
    config = parse_fleet_config(
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{files}"\n'
        f'[services.db]\nkind = "sqlite"\npath = "{db}"\n'
    )
    fleet = Fleet(settings=Settings(), config=config, store=MemoryStore())
    (tmp_path / ".app.db.backfleet-restore-k.sqlite").write_bytes(b"x")

    def broken(self: DirectorySource) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(DirectorySource, "recover", broken)
    problems = recover_targets(fleet, namespace="app", services=["files", "db", "gone"])
    assert problems == ["files: PermissionError: no"]
    assert names(tmp_path) == []


def test_recover_targets_of_an_unknown_namespace_reports_it(tmp_path: Path) -> None:
    config = parse_fleet_config('namespace = "app"\n[services.db]\nkind = "sqlite"\npath = "x"\n')
    fleet = Fleet(settings=Settings(), config=config, store=MemoryStore())
    (problem,) = recover_targets(fleet, namespace="nosuch", services=["db"])
    assert "nosuch" in problem
