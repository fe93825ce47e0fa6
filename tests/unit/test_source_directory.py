"""DirectorySource through the real pipeline and the in-memory store."""

import hashlib
import io
import itertools
import mmap
import os
import re
import stat
import tarfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import blake3
import pytest
import zstandard

from tests.fakes import BytesSource, stored_entry
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import make_source
from workers.sources.base import Dump, RestoreStream, Source
from workers.sources.direct_read import CacheAwareReader
from workers.sources.direct_write import DIRECT_MIN_SIZE, DirectFile, aligned_buffer
from workers.sources.directory import DirectorySource, archive, extract, swap
from workers.sources.directory.extract import check_member
from workers.stores.memory import MemoryStore
from workers.transfer.download import VerifyingReader, restore_artifact
from workers.transfer.upload import store_artifact

KEY = artifact_key("app", "2024-01-02t03-04-05", "files", "tar", "zstd")
T0 = 1_600_000_000_123_456_789  # ns: mtimes with every digit used
IS_ROOT = os.geteuid() == 0
# (kind, mode, uid, gid, content digest or link target or size, mtime in ns)
Entry = tuple[str, int, int, int, str, int]


def read_all(stream: Any) -> bytes:
    """A dump's whole stream (its reads hand out one chunk at a time)."""
    return b"".join(iter(lambda: stream.read(), b""))


def backup(store: MemoryStore, source: Source) -> ArtifactEntry:
    return stored_entry(store, source, key=KEY, service="files")


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
        # large enough to be written with O_DIRECT, with a tail that is not a whole block
        b"big/odd size.bin": os.urandom(DIRECT_MIN_SIZE + 3 * 4096 + 17),
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
    os.link(root / "big" / "odd size.bin", root / "big" / "hard link")
    os.mkfifo(root / "fifo")
    os.chmod(root / "space name", 0o777)
    os.chmod(os.path.join(broot, b"bad\xffname"), 0o600)
    os.chmod(root / "private", 0o700)
    os.chmod(root / "a", 0o751)
    os.chmod(root / "big" / "odd size.bin", 0o640)
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
    # special_files: the FIFO too (tests/unit/test_restore_special_files.py: without it)
    target = DirectorySource(tmp_path / "dst", special_files=True)
    restore_artifact(store=store, entry=entry, source=target)

    assert_same_tree(tmp_path / "dst", original)
    for link, first in (("hard link", "plain.txt"), ("big/hard link", "big/odd size.bin")):
        assert os.lstat(tmp_path / "dst" / link).st_ino == os.lstat(tmp_path / "dst" / first).st_ino
    assert entry.source == {
        "kind": "directory",
        "files": files,
        "bytes": size,
        "files_blake3": entry.source["files_blake3"],
    }
    assert re.fullmatch("[0-9a-f]{64}", entry.source["files_blake3"])
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

    restore_artifact(store=store, entry=entry, source=DirectorySource(root, special_files=True))

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
    assert entry.source == {
        "kind": "directory",
        "files": 1,
        "bytes": len(data),
        "files_blake3": entry.source["files_blake3"],
    }


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

    monkeypatch.setattr(archive, "_add_file", broken)
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
    """The two-rename swap, used where renameat2's exchange is unsupported."""
    monkeypatch.setattr(swap, "exchange", lambda first, second: False)
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


# --- volumes ---
class VolumeSource:
    """One volume of a directory posing as a source, as a backup stores each volume."""

    kind: ClassVar[str] = "directory"
    format: ClassVar[str] = "tar"

    def __init__(self, source: DirectorySource, after: str | None, max_bytes: int) -> None:
        self.source, self.after, self.max_bytes = source, after, max_bytes

    def dump(self) -> AbstractContextManager[Dump]:
        return self.source.dump_volume(after=self.after, max_bytes=self.max_bytes)

    def restore(self, stream: RestoreStream) -> None:
        raise NotImplementedError


def backup_volumes(
    store: MemoryStore, source: DirectorySource, max_bytes: int, after: str | None = None
) -> list[ArtifactEntry]:
    """Volume after volume until the walk is done, each resuming at the last one's `last`."""
    entries: list[ArtifactEntry] = []
    for _ in range(1000):  # every volume but the last writes at least one entry
        key = f"app/2024-01-02t03-04-05/files.{len(store.objects):05d}.tar.zst"
        stored = store_artifact(
            store=store,
            key=key,
            source=VolumeSource(source, after, max_bytes),
            part_size=256 * 1024,
            compression_level=1,
        )
        entries.append(
            ArtifactEntry(
                service="files",
                key=key,
                format="tar",
                compression="zstd",
                size=stored.size,
                sha256=stored.sha256,
                source_size=stored.source_size,
                source=stored.facts,
            )
        )
        if stored.facts["final"]:
            return entries
        assert stored.facts["last"] != after, "a volume made no progress"
        after = stored.facts["last"]
    raise AssertionError("the volumes never ended")


class Opened:
    """Streams of the volumes, opened one at a time as the restore reaches them."""

    def __init__(self, store: MemoryStore, entries: list[ArtifactEntry]) -> None:
        self.store, self.entries = store, entries
        self.opened = self.closed = 0

    def __iter__(self) -> Iterator[RestoreStream]:
        for entry in self.entries:
            self.opened += 1
            try:
                with self.store.open_read(entry.key) as raw:
                    yield VerifyingReader(raw, entry)
            finally:
                self.closed += 1


def restore_volumes(store: MemoryStore, entries: list[ArtifactEntry], target: Path) -> Opened:
    streams = Opened(store, entries)
    DirectorySource(target, special_files=True).restore_volumes(iter(streams))  # the FIFO too
    return streams


def members(store: MemoryStore, entry: ArtifactEntry) -> list[bytes]:
    """The relative paths a stored volume holds ("." for the root), as bytes."""
    stored = io.BytesIO(store.objects[entry.key])  # a zstd frame per MiB of tar: read them all
    data = zstandard.ZstdDecompressor().stream_reader(stored, read_across_frames=True).read()
    with tarfile.open(
        fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape"
    ) as tar:
        return [os.fsencode(os.path.normpath(name)) for name in tar.getnames()]


def key_of(relative: bytes) -> tuple[bytes, ...]:
    return () if relative == b"." else tuple(relative.split(b"/"))


@pytest.mark.parametrize("max_bytes", [1, 4096, 60_000, 10**9])
def test_volumes_round_trip_exactly(tmp_path: Path, max_bytes: int) -> None:
    files, size = build_tree(tmp_path / "src")
    original = snapshot(tmp_path / "src")
    store = MemoryStore()

    entries = backup_volumes(store, DirectorySource(tmp_path / "src"), max_bytes)
    restore_volumes(store, entries, tmp_path / "dst")

    assert_same_tree(tmp_path / "dst", original)
    written = [name for entry in entries for name in members(store, entry)]
    assert sorted(written) == sorted(original)  # every entry once (a FIFO too)
    assert written[0] == b"." and [e.source["final"] for e in entries][-1] is True
    assert not any(entry.source["final"] for entry in entries[:-1])
    assert sum(entry.source["bytes"] for entry in entries) >= size
    if max_bytes == 10**9:
        assert len(entries) == 1
    if max_bytes == 1:  # every non-empty file alone
        assert len(entries) > files - 1
    assert leftovers(tmp_path) == []


def test_volume_boundaries_respect_max_bytes(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "sub" / "deeper").mkdir(parents=True)
    sizes = {"a": 700, "b": 1500, "sub/c": 1000, "sub/deeper/d": 2000, "sub/e": 10, "big": 9000}
    sizes |= {f"many/{n:02d}": 300 for n in range(20)}
    for name, length in sizes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(length))
    store = MemoryStore()

    entries = backup_volumes(store, DirectorySource(root), max_bytes=2500)

    assert sum(entry.source["bytes"] for entry in entries) == sum(sizes.values())
    assert sum(entry.source["files"] for entry in entries) == len(sizes)
    for entry in entries:
        facts = entry.source
        assert facts["bytes"] <= 2500 or facts["files"] == 1, facts
    big = [entry for entry in entries if b"big" in members(store, entry)]
    assert len(big) == 1 and big[0].source["bytes"] == 9000 and big[0].source["files"] == 1
    # Each volume is full: the next one starts with a file that did not fit.
    for entry, following in itertools.pairwise(entries):
        first_file = next(n for n in members(store, following) if n in sizes_bytes(sizes))
        assert entry.source["bytes"] + sizes[first_file.decode()] > 2500


def sizes_bytes(sizes: dict[str, int]) -> set[bytes]:
    return {name.encode() for name in sizes}


def test_a_resumed_backup_neither_repeats_nor_loses_an_entry(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for folder in ("", "m", "z"):
        (root / folder).mkdir(exist_ok=True)
    for n in range(10):
        for name in (f"a{n:02d}", f"m/x{n:02d}", f"z/y{n:02d}"):
            (root / name).write_bytes(os.urandom(1000))
    before = snapshot(root)
    store = MemoryStore()
    source = DirectorySource(root)
    with source.dump_volume(after=None, max_bytes=12_000) as dump:
        first = read_all(dump.stream)
    last = dump.facts["last"]
    assert bytes.fromhex(last) == b"m/x01" and dump.facts["final"] is False
    assert dump.facts["files"] == 12 and dump.facts["bytes"] == 12_000

    # The tree changes before the backup resumes, on both sides of `last`.
    (root / "a03").unlink()
    (root / "a05b").write_bytes(b"new, before last: in neither volume")
    (root / "m" / "x00").unlink()
    (root / "m" / "x005").write_bytes(b"new, before last")
    (root / "m" / "x05").unlink()
    (root / "m" / "x011").write_bytes(b"new, after last")
    (root / "n").mkdir()
    (root / "n" / "new").write_bytes(b"new folder, after last")
    (root / "z" / "y03").unlink()
    (root / "z" / "y04").write_bytes(b"changed after last")
    after = snapshot(root)

    rest = backup_volumes(store, source, max_bytes=12_000, after=last)
    store.objects["app/first.tar.zst"] = zstandard.ZstdCompressor().compress(first)
    first_entry = ArtifactEntry(
        service="files",
        key="app/first.tar.zst",
        format="tar",
        compression="zstd",
        size=len(store.objects["app/first.tar.zst"]),
        sha256=hashlib.sha256(store.objects["app/first.tar.zst"]).hexdigest(),
        source_size=len(first),
    )
    entries = [first_entry, *rest]
    restore_volumes(store, entries, tmp_path / "dst")

    position = key_of(b"m/x01")
    expected = {name: entry for name, entry in before.items() if key_of(name) <= position}
    expected |= {name: entry for name, entry in after.items() if key_of(name) > position}
    assert_same_tree(tmp_path / "dst", expected)
    written = [name for entry in entries for name in members(store, entry)]
    assert len(written) == len(set(written)) == len(expected)
    both = set(before) & set(after)
    assert both <= set(snapshot(tmp_path / "dst"))  # nothing that existed throughout is lost


def test_resuming_after_the_end_gives_an_empty_final_volume(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    source = DirectorySource(tmp_path / "src")
    with source.dump_volume(after=None, max_bytes=1 << 20) as dump:
        read_all(dump.stream)
    assert dump.facts == {
        "kind": "directory",
        "files": 1,
        "bytes": 1,
        "after": None,
        "last": b"f".hex(),
        "final": True,
        # path NUL size NUL blake3(content) LF, for each file, hashed
        "files_blake3": blake3.blake3(
            b"f\x001\x00" + blake3.blake3(b"x").hexdigest().encode() + b"\n"
        ).hexdigest(),
    }

    with source.dump_volume(after=dump.facts["last"], max_bytes=1 << 20) as again:
        empty = read_all(again.stream)
    with tarfile.open(fileobj=io.BytesIO(empty)) as tar:
        assert tar.getnames() == []
    assert again.facts == {
        **dump.facts,
        "files": 0,
        "bytes": 0,
        "after": dump.facts["last"],
        "files_blake3": blake3.blake3(b"").hexdigest(),
    }

    for bad in ("not hex", b"../x".hex(), b"a//b".hex(), ""):
        with pytest.raises(SourceError, match="not a volume position"):
            source.dump_volume(after=bad, max_bytes=1).__enter__()


def test_a_volume_holding_a_non_utf8_name_resumes_after_it(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    broot = os.fsencode(root)
    for name in (b"a\xff", b"a\xfe\xff", "ü".encode(), b"b"):
        with open(os.path.join(broot, name), "wb") as out:
            out.write(b"12345")
    store = MemoryStore()

    entries = backup_volumes(store, DirectorySource(root), max_bytes=5)

    lasts = [bytes.fromhex(entry.source["last"]) for entry in entries]
    assert lasts == sorted([b"a\xfe\xff", b"a\xff", b"b", "ü".encode()])
    restore_volumes(store, entries, tmp_path / "dst")
    assert_same_tree(tmp_path / "dst", snapshot(root))


def test_a_tampered_second_volume_leaves_the_target_untouched(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    store = MemoryStore()
    entries = backup_volumes(store, DirectorySource(tmp_path / "src"), max_bytes=4096)
    assert len(entries) >= 3
    target = tmp_path / "data"
    build_tree(target)
    (target / "created later.txt").write_text("still here after a failed restore")
    before = snapshot(target)
    data = bytearray(store.objects[entries[1].key])
    data[len(data) // 2] ^= 0x01
    store.objects[entries[1].key] = bytes(data)

    streams = Opened(store, entries)
    with pytest.raises(IntegrityError):
        DirectorySource(target).restore_volumes(iter(streams))

    assert snapshot(target) == before
    assert leftovers(tmp_path) == []
    assert streams.opened == streams.closed == 2  # the third was never opened


def test_no_volumes_is_refused_and_the_target_kept(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep").write_bytes(b"x")

    with pytest.raises(SourceError, match="no volumes"):
        DirectorySource(tmp_path / "data").restore_volumes([])

    assert os.listdir(tmp_path / "data") == ["keep"]
    assert leftovers(tmp_path) == []


def test_one_volume_is_the_plain_dump(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    source = DirectorySource(tmp_path / "src")
    with source.dump() as whole:
        plain = read_all(whole.stream)
    with source.dump_volume(after=None, max_bytes=10**12) as volume:
        single = read_all(volume.stream)
    assert plain == single
    assert volume.facts == {
        **whole.facts,
        "after": None,
        "last": volume.facts["last"],
        "final": True,
    }
    assert set(whole.facts) == {"kind", "files", "bytes", "files_blake3"}


def large_and_small_tree(root: Path) -> bytes:
    """A file above DIRECT_MIN_SIZE and one below; returns the large one's bytes."""
    root.mkdir()
    data = os.urandom(DIRECT_MIN_SIZE + 5)
    (root / "large.bin").write_bytes(data)
    (root / "small.txt").write_bytes(b"small")
    return data


def assert_large_and_small_tree(root: Path, data: bytes) -> None:
    assert (root / "large.bin").read_bytes() == data
    assert (root / "small.txt").read_bytes() == b"small"


@pytest.mark.parametrize("direct", [True, False])
def test_restore_direct_writes_decides_how_large_files_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    data = large_and_small_tree(tmp_path / "src")
    store = MemoryStore()
    entry = backup(store, DirectorySource(tmp_path / "src"))
    opened: list[str] = []

    def spy(path: str, buffer: mmap.mmap) -> object:
        opened.append(os.path.basename(path))
        return DirectFile(path, buffer)

    monkeypatch.setattr(extract, "DirectFile", spy)
    settings = Settings(restore_direct_writes=direct)
    spec = ServiceSpec(name="files", kind="directory", path=tmp_path / "dst")

    restore_artifact(store=store, entry=entry, source=make_source(spec, settings))

    assert_large_and_small_tree(tmp_path / "dst", data)
    assert opened == (["large.bin"] if direct else [])


@pytest.mark.parametrize("direct", [True, False])
def test_backup_direct_reads_decides_how_large_files_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    data = large_and_small_tree(tmp_path / "src")
    readers: list[int] = []

    class Spy(CacheAwareReader):
        def __init__(self, fd: int, size: int, buffer: mmap.mmap) -> None:
            readers.append(size)
            super().__init__(fd, size, buffer)

    monkeypatch.setattr(archive, "CacheAwareReader", Spy)
    spec = ServiceSpec(name="files", kind="directory", path=tmp_path / "src")
    source = make_source(spec, Settings(backup_direct_reads=direct))
    store = MemoryStore()

    entry = backup(store, source)
    restore_artifact(store=store, entry=entry, source=DirectorySource(tmp_path / "dst"))

    assert_large_and_small_tree(tmp_path / "dst", data)
    assert readers == ([len(data)] if direct else [])


def test_a_failed_extraction_frees_its_direct_write_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = tarfile.TarInfo("large.bin")
    member.size = DIRECT_MIN_SIZE + 5
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w|") as tar:
        tar.addfile(member, io.BytesIO(os.urandom(member.size)))
    cut_short = io.BytesIO(whole.getvalue()[: tarfile.BLOCKSIZE + DIRECT_MIN_SIZE // 2])
    buffers: list[mmap.mmap] = []

    def tracked() -> mmap.mmap:
        buffers.append(aligned_buffer())
        return buffers[-1]

    monkeypatch.setattr(extract, "aligned_buffer", tracked)

    with (
        pytest.raises(tarfile.TarError),
        extract._Extractor.open(fileobj=cut_short, mode="r|") as extractor,
    ):
        for item in extractor:
            extractor.extract(item, tmp_path)

    assert len(buffers) == 1 and buffers[0].closed


def test_planned_volumes_end_where_volumes_by_size_end(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    source = DirectorySource(tmp_path / "src")
    by_size, after = [], None
    while True:
        with source.dump_volume(after=after, max_bytes=4096) as dump:
            read_all(dump.stream)
        if dump.facts["final"]:
            break
        after = dump.facts["last"]
        by_size.append(after)

    planned = list(source.plan_volumes(after=None, max_bytes=4096))

    assert len(by_size) >= 2 and planned == [*by_size, None]
    assert list(source.plan_volumes(after=by_size[0], max_bytes=4096)) == [*by_size[1:], None]
    assert list(DirectorySource(tmp_path / "gone").plan_volumes(after=None, max_bytes=1)) == [None]


def test_a_planned_volume_holds_exactly_its_span_however_the_tree_changed(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    for name in "abcdef":
        (root / name).write_bytes(b"x" * 100)
    source = DirectorySource(root)
    assert list(source.plan_volumes(after=None, max_bytes=200)) == [b"b".hex(), b"d".hex(), None]
    (root / "b").write_bytes(b"y" * 5000)  # grew past max_bytes after the plan
    (root / "d").unlink()  # and the second volume's last entry went

    def names(after: str | None, until: str) -> tuple[list[str], dict[str, Any]]:
        with source.dump_volume(after=after, max_bytes=200, until=until) as dump:
            data = read_all(dump.stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return tar.getnames(), dump.facts

    first, facts = names(None, b"b".hex())
    assert first == [".", "./a", "./b"] and facts["bytes"] == 5100
    assert facts["last"] == b"b".hex() and facts["final"] is False
    second, facts = names(b"b".hex(), b"d".hex())
    assert second == ["./c"] and facts["after"] == b"b".hex()
    assert facts["last"] == b"d".hex() and facts["final"] is False
