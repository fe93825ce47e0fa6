import errno
import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from workers.errors import ConfigError, NotFoundError, PermanentError
from workers.settings import Settings
from workers.stores import make_store
from workers.stores.local import UPLOADS_DIR, LocalStore


def test_multipart_upload_appears_only_when_complete(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    key = "app/2023-02-02t17-03-15/db.sqlite.zst"
    upload = store.create_upload(key)
    parts = [store.upload_part(key, upload, n, bytes([n]) * 1000) for n in (1, 2, 3)]
    assert not store.exists(key)
    assert [info.key for info in store.list("")] == []  # unfinished uploads are not listed
    store.complete_upload(key, upload, parts)
    with store.open_read(key) as handle:
        assert handle.read() == b"\x01" * 1000 + b"\x02" * 1000 + b"\x03" * 1000
    assert [(info.key, info.size) for info in store.list("app/")] == [(key, 3000)]
    assert os.listdir(tmp_path / UPLOADS_DIR) == []


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    upload = store.create_upload("a/b")
    store.upload_part("a/b", upload, 1, b"partial")
    store.abort_upload("a/b", upload)
    store.abort_upload("a/b", upload)  # twice is fine
    assert os.listdir(tmp_path / UPLOADS_DIR) == []
    assert not store.exists("a/b")


def test_parts_must_add_up(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    upload = store.create_upload("a/b")
    part = store.upload_part("a/b", upload, 1, b"12345")
    store.upload_part("a/b", upload, 2, b"678")
    with pytest.raises(PermanentError, match="add up"):
        store.complete_upload("a/b", upload, [part])


def test_put_read_delete_and_empty_folders_go(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_object("ns/ts/manifest.json", b"{}")
    assert store.exists("ns/ts/manifest.json")
    store.delete("ns/ts/manifest.json")
    assert not (tmp_path / "ns").exists()
    with pytest.raises(NotFoundError):
        store.open_read("ns/ts/manifest.json")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "", "a/../../b"])
def test_keys_cannot_leave_the_store(tmp_path: Path, key: str) -> None:
    with pytest.raises(PermanentError):
        LocalStore(tmp_path).put_object(key, b"x")


def test_url_and_check(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "missing")
    assert store.url_for("app", "2023-02-02t16-00-00") == (
        f"file://{tmp_path}/missing/app/2023-02-02t16-00-00/"
    )
    with pytest.raises(ConfigError, match="store init"):
        store.check()
    store.init()
    store.check()


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode)
        for path in [root, *root.rglob("*")]
    }


@pytest.mark.parametrize(
    ("setting", "file_mode", "dir_mode"), [("0600", 0o600, 0o700), ("640", 0o640, 0o750)]
)
def test_files_and_folders_get_the_configured_mode_whatever_the_umask(
    tmp_path: Path, setting: str, file_mode: int, dir_mode: int
) -> None:
    settings = Settings(
        object_store_location_local=tmp_path / "store", object_store_local_file_mode=setting
    )
    old = os.umask(0o002)  # a permissive umask must not widen anything
    try:
        store = make_store(settings)
        assert isinstance(store, LocalStore)
        store.init()
        store.put_object("app/2024-01-01t00-00-00/manifest.json", b"{}")
        upload = store.create_upload("app/2024-01-01t00-00-00/files.tar.zst")
        store.upload_part("app/2024-01-01t00-00-00/files.tar.zst", upload, 1, b"data")
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "store")
    files = {name: mode for name, mode in modes.items() if (tmp_path / "store" / name).is_file()}
    folders = {name: mode for name, mode in modes.items() if name not in files}
    assert len(files) == 3 and set(files.values()) == {file_mode}, modes  # object, part, marker
    assert set(folders.values()) == {dir_mode}, modes


@pytest.mark.parametrize("bad", ["0700", "0644x", "0400", "600600", "0755", "-1"])
def test_a_bad_file_mode_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="object_store_local_file_mode"):
        Settings(object_store_local_file_mode=bad)


def test_a_new_sqlite_catalog_is_private(tmp_path: Path) -> None:
    from workers.catalog.db import dispose_engines
    from workers.catalog.migrate import upgrade_catalog

    database = tmp_path / "var" / "catalog.db"
    old = os.umask(0o002)
    try:
        upgrade_catalog(f"sqlite:///{database}")
    finally:
        os.umask(old)
        dispose_engines()
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    for extra in database.parent.glob("catalog.db-*"):  # WAL and shared memory, if left
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600


def test_a_part_of_an_upload_that_is_gone_is_refused_not_written_world_readable(
    tmp_path: Path,
) -> None:
    """An upload the stale-upload sweep (or `store init --reset`) removed while a slow backup
    still sends parts: appending would make a new file with the umask's mode."""
    store = LocalStore(tmp_path / "store")
    store.init()
    key = "app/2024-01-01t00-00-00/files.tar.zst"
    upload = store.create_upload(key)
    store.abort_upload(key, upload)
    old = os.umask(0o022)
    try:
        with pytest.raises(PermanentError, match="no longer exists"):
            store.upload_part(key, upload, 2, b"backup bytes")
    finally:
        os.umask(old)
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]


def test_objects_carry_their_sha256_as_an_extended_attribute(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_object("ns/ts/manifest.json", b"{}")
    expected = hashlib.sha256(b"{}").hexdigest()
    assert os.getxattr(tmp_path / "ns/ts/manifest.json", "user.sha256").decode() == expected
    assert store.stored_sha256("ns/ts/manifest.json") == expected
    with pytest.raises(NotFoundError):
        store.stored_sha256("ns/ts/missing")


def test_a_filesystem_without_extended_attributes_stores_objects_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*_: object) -> None:  # what a filesystem without user xattrs answers
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(os, "setxattr", refused)
    store = LocalStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="workers.stores.local"):
        store.put_object("ns/ts/a", b"first")
        store.put_object("ns/ts/b", b"second")
    with store.open_read("ns/ts/b") as handle:
        assert handle.read() == b"second"
    assert store.stored_sha256("ns/ts/a") is None
    said = [r for r in caplog.records if "keeps no extended attributes" in r.getMessage()]
    assert len(said) == 1  # said once, not per object
