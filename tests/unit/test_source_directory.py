"""DirectorySource through the real pipeline and the in-memory store."""

import hashlib
import io
import os
import stat
import tarfile
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from tests.fakes import BytesSource
from workers.errors import IntegrityError, SourceError
from workers.manifest import ArtifactEntry, artifact_key
from workers.pipeline import restore_artifact, store_artifact
from workers.sources import directory as directory_module
from workers.sources.base import Source
from workers.sources.directory import DirectorySource, check_member
from workers.stores.memory import MemoryStore

KEY = artifact_key("app", "2024-01-02t03-04-05", "files", "tar", "zstd")
T0 = 1_600_000_000_123_456_789  # ns: mtimes with every digit used
IS_ROOT = os.geteuid() == 0
# (kind, mode, uid, gid, content digest or link target or size, mtime in ns)
Entry = tuple[str, int, int, int, str, int]


def backup(store: MemoryStore, source: Source) -> ArtifactEntry:
    stored = store_artifact(
        store=store, key=KEY, source=source, part_size=256 * 1024, compression_level=1
    )
    return ArtifactEntry(
        service="files",
        key=stored.key,
        format=source.format,
        compression="zstd",
        size=stored.size,
        sha256=stored.sha256,
        source_size=stored.source_size,
        source=stored.facts,
    )


def build_tree(root: Path) -> tuple[int, int]:
    """Every kind of thing a directory backup must keep, with odd names, modes and mtimes.

    Returns the number of regular files (a hard link is not one more) and their bytes.
    """
    root.mkdir()
    broot = os.fsencode(root)
    files: dict[bytes, bytes] = {
        b"plain.txt": b"hello\n",
        b"bad\xffname": b"not UTF-8",
        b"new\nline": b"newline",
        b"space name": b"",
        "unicodé ☃ 日本語".encode(): os.urandom(5000),
        b"x" * 200: b"long",
        b"a/b/c/deep.bin": os.urandom(70_000),
        b"locked/inside.txt": b"in a read-only folder",
    }
    for name, data in files.items():
        path = os.path.join(broot, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as out:
            out.write(data)
    for folder in (b"empty", b"a/empty too", b"private"):
        os.makedirs(os.path.join(broot, folder))
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("/absolute/target/nowhere", root / "absolute")
    os.symlink("plain.txt", root / "relative")
    os.symlink("a/b", root / "folder link")
    os.symlink(b"bad\xfftarget\nwith newline", os.path.join(broot, b"link \xfe"))
    os.link(root / "plain.txt", root / "hard link")
    os.mkfifo(root / "fifo")
    os.chmod(root / "space name", 0o777)
    os.chmod(os.path.join(broot, b"bad\xffname"), 0o600)
    os.chmod(root / "private", 0o700)
    os.chmod(root / "a", 0o751)
    if IS_ROOT:
        os.chown(root / "plain.txt", 1234, 2345)
        os.chown(root / "absolute", 4321, 5432, follow_symlinks=False)
    # mtimes last, deepest first, so that creating entries does not move them again
    paths = [
        os.path.join(top, name) for top, dirs, names in os.walk(broot) for name in dirs + names
    ]
    for n, path in enumerate(sorted(paths, key=len, reverse=True)):
        os.utime(path, ns=(T0, T0 + n * 1_000_001), follow_symlinks=False)
    os.chmod(root / "locked", 0o500)
    os.chmod(root, 0o750)
    os.utime(root, ns=(T0, T0 - 7))
    return len(files), sum(len(data) for data in files.values())


def snapshot(root: Path) -> dict[bytes, Entry]:
    """Everything about a tree we promise to keep, keyed by relative path (bytes)."""
    broot = os.fsencode(root)
    result: dict[bytes, Entry] = {}
    paths = [broot] + [
        os.path.join(top, name) for top, dirs, names in os.walk(broot) for name in dirs + names
    ]
    for path in paths:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            kind, what = "file", hashlib.sha256(Path(os.fsdecode(path)).read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            kind, what = "link", os.fsdecode(os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            kind, what = "dir", ""
        else:
            kind, what = "other", str(stat.S_IFMT(st.st_mode))
        rel = os.path.relpath(path, broot)
        result[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what, st.st_mtime_ns)
    return result


def assert_same_tree(restored: Path, original: dict[bytes, Entry]) -> None:
    now = snapshot(restored)
    assert sorted(now) == sorted(original)
    for name, entry in original.items():
        assert now[name] == entry, name  # mtimes to the nanosecond


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if "backfleet" in name)


def tamper(store: MemoryStore, where: float) -> None:
    data = bytearray(store.objects[KEY])
    data[int(len(data) * where)] ^= 0x01
    store.objects[KEY] = bytes(data)


def test_round_trip_keeps_names_links_modes_and_mtimes(tmp_path: Path) -> None:
    files, size = build_tree(tmp_path / "src")
    original = snapshot(tmp_path / "src")
    store = MemoryStore()

    entry = backup(store, DirectorySource(tmp_path / "src"))
    restore_artifact(store=store, entry=entry, source=DirectorySource(tmp_path / "dst"))

    assert_same_tree(tmp_path / "dst", original)
    assert (
        os.lstat(tmp_path / "dst" / "hard link").st_ino
        == os.lstat(tmp_path / "dst" / "plain.txt").st_ino
    )
    assert entry.source == {"kind": "directory", "files": files, "bytes": size}
    assert leftovers(tmp_path) == []


def test_restore_replaces_everything_changed_after_the_backup(tmp_path: Path) -> None:
    root = tmp_path / "data"
    build_tree(root)
    original = snapshot(root)
    store = MemoryStore()
    entry = backup(store, DirectorySource(root))
    (root / "created later.txt").write_text("gone after the restore")
    (root / "empty" / "new folder").mkdir()
    (root / "a" / "b" / "c" / "deep.bin").write_bytes(b"overwritten")
    (root / "relative").unlink()
    os.chmod(root / "private", 0o777)

    restore_artifact(store=store, entry=entry, source=DirectorySource(root))

    assert_same_tree(root, original)
    assert leftovers(tmp_path) == []  # neither the staging folder nor the old copy


@pytest.mark.parametrize("where", [0.05, 0.5, 0.999])
def test_tampered_artifact_leaves_the_target_untouched(tmp_path: Path, where: float) -> None:
    root = tmp_path / "data"
    build_tree(root)
    store = MemoryStore()
    entry = backup(store, DirectorySource(root))
    (root / "created later.txt").write_text("still here after a failed restore")
    before = snapshot(root)
    tamper(store, where)

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=DirectorySource(root))

    assert snapshot(root) == before
    assert leftovers(tmp_path) == []


def test_restore_into_a_missing_target_and_missing_parents(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    store = MemoryStore()
    entry = backup(store, DirectorySource(tmp_path / "src"))
    target = tmp_path / "new" / "deeper" / "dst"

    restore_artifact(store=store, entry=entry, source=DirectorySource(target))

    assert (target / "f").read_bytes() == b"x"
    assert leftovers(target.parent) == []


def test_a_20_mib_file_round_trips(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    data = os.urandom(20 * 2**20)
    (tmp_path / "src" / "big.bin").write_bytes(data)
    store = MemoryStore()

    entry = backup(store, DirectorySource(tmp_path / "src"))
    restore_artifact(store=store, entry=entry, source=DirectorySource(tmp_path / "dst"))

    assert (tmp_path / "dst" / "big.bin").read_bytes() == data
    assert entry.source == {"kind": "directory", "files": 1, "bytes": len(data)}


def test_a_missing_directory_or_a_file_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    for path in (tmp_path / "missing", tmp_path / "file"):
        with pytest.raises(SourceError, match="not a directory"):
            backup(MemoryStore(), DirectorySource(path))
    assert not (tmp_path / "missing").exists()


def tar_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "tar-dump"]


@pytest.mark.timeout(30)
def test_a_reader_that_stops_early_does_not_hang(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(20 * 2**20))

    with pytest.raises(SourceError, match="not read to the end"):  # noqa: SIM117
        with DirectorySource(tmp_path / "src").dump() as dump:
            assert len(dump.stream.read(1024)) == 1024

    assert tar_threads() == []


@pytest.mark.timeout(30)
def test_a_failure_in_the_body_wins_and_the_writer_still_ends(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "big.bin").write_bytes(os.urandom(8 * 2**20))

    with pytest.raises(RuntimeError), DirectorySource(tmp_path / "src").dump() as dump:
        dump.stream.read(10)
        raise RuntimeError("upload failed")

    assert tar_threads() == []


def test_an_error_while_archiving_surfaces_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")

    def broken(*args: object) -> None:
        raise OSError("disk read error")

    monkeypatch.setattr(directory_module, "_add_file", broken)
    store = MemoryStore()

    with pytest.raises(SourceError, match="disk read error"):
        backup(store, DirectorySource(tmp_path / "src"))
    assert store.objects == {} and store.uploads == {}


def test_entries_removed_while_walking_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src").mkdir()
    for name in ("keep", "vanishing"):
        (tmp_path / "src" / name).write_bytes(name.encode())
    real = tarfile.TarFile.gettarinfo

    def racy(self: tarfile.TarFile, name: str, arcname: str) -> tarfile.TarInfo | None:
        if name.endswith("vanishing"):
            raise FileNotFoundError(name)
        return real(self, name, arcname)

    monkeypatch.setattr(tarfile.TarFile, "gettarinfo", racy)
    store = MemoryStore()
    entry = backup(store, DirectorySource(tmp_path / "src"))
    monkeypatch.undo()

    restore_artifact(store=store, entry=entry, source=DirectorySource(tmp_path / "dst"))
    assert os.listdir(tmp_path / "dst") == ["keep"]
    assert entry.source["files"] == 1


# --- hostile archives ---
def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    "bad",
    [
        member("../evil"),
        member("a/../../evil"),
        member("/etc/evil"),
        member(""),
        member("hard", tarfile.LNKTYPE, "../outside"),
        member("hard", tarfile.LNKTYPE, "/etc/passwd"),
    ],
    ids=repr,
)
def test_the_checker_refuses_names_that_leave_the_target(
    tmp_path: Path, bad: tarfile.TarInfo
) -> None:
    with pytest.raises(SourceError, match="refusing"):
        check_member(bad, str(tmp_path))


def test_the_checker_refuses_writes_through_an_extracted_link(tmp_path: Path) -> None:
    staging, outside = tmp_path / "staging", tmp_path / "outside"
    staging.mkdir()
    outside.mkdir()
    os.symlink(outside, staging / "link")  # as if an earlier member made it
    os.symlink("../outside/x", staging / "dangling")
    os.symlink(outside / "passwd", staging / "to file")

    for bad in (
        member("link/file"),
        member("link", tarfile.DIRTYPE),
        member("dangling"),
        member("hard", tarfile.LNKTYPE, "to file"),
    ):
        with pytest.raises(SourceError, match="resolves outside"):
            check_member(bad, str(staging))
    for good in (member("."), member("inside/file"), member("link2", tarfile.SYMTYPE, "/etc")):
        check_member(good, str(staging))


class TarSource(BytesSource):
    """A hand-made tar stored as if it were a directory dump."""

    kind: ClassVar[str] = "directory"
    format: ClassVar[str] = "tar"


def test_a_hostile_archive_is_refused_end_to_end(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "data"
    target.mkdir()
    (target / "precious").write_text("keep me")
    before = snapshot(target)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(member(".", tarfile.DIRTYPE))
        tar.addfile(member("sneaky", tarfile.SYMTYPE, str(outside)))
        payload = member("sneaky/pwned")
        payload.size = 5
        tar.addfile(payload, io.BytesIO(b"owned"))
    store = MemoryStore()
    entry = backup(store, TarSource(buffer.getvalue()))

    with pytest.raises(SourceError, match="refusing tar member 'sneaky/pwned'"):
        restore_artifact(store=store, entry=entry, source=DirectorySource(target))

    assert os.listdir(outside) == []
    assert snapshot(target) == before
    assert leftovers(tmp_path) == []


def test_a_failed_swap_puts_the_old_target_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    build_tree(root)
    store = MemoryStore()
    entry = backup(store, DirectorySource(root))
    (root / "created later.txt").write_text("still here")
    before = snapshot(root)
    real_rename, calls = os.rename, []

    def second_rename_fails(src: str, dst: str) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError("simulated crash of the swap")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)

    with pytest.raises(SourceError, match="could not swap"):
        restore_artifact(store=store, entry=entry, source=DirectorySource(root))

    monkeypatch.undo()
    assert snapshot(root) == before
    assert leftovers(tmp_path) == []


def test_a_mount_point_or_a_file_target_is_refused_before_anything_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a file").write_text("x")
    with pytest.raises(SourceError, match="not a directory"):
        DirectorySource(tmp_path / "a file").restore(io.BytesIO(b""))  # type: ignore[arg-type]
    monkeypatch.setattr(os.path, "ismount", lambda path: True)
    with pytest.raises(SourceError, match="mount point"):
        DirectorySource(tmp_path).restore(io.BytesIO(b""))  # type: ignore[arg-type]


def test_a_symlinked_target_keeps_its_link_and_old_mtimes_survive(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    before_1970 = -1_234_567_890_123_456_789
    (tmp_path / "src" / "old").write_bytes(b"ancient")
    os.utime(tmp_path / "src" / "old", ns=(0, before_1970))
    store = MemoryStore()
    entry = backup(store, DirectorySource(tmp_path / "src"))
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "later").write_bytes(b"x")
    os.symlink("real", tmp_path / "configured")

    restore_artifact(store=store, entry=entry, source=DirectorySource(tmp_path / "configured"))

    assert os.readlink(tmp_path / "configured") == "real"
    assert os.listdir(tmp_path / "real") == ["old"]
    assert os.lstat(tmp_path / "real" / "old").st_mtime_ns == before_1970
