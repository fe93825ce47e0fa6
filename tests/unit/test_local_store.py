import os
from pathlib import Path

import pytest

from workers.errors import ConfigError, NotFoundError, PermanentError
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
