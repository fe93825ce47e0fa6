"""One suite for every object store: the protocol of workers/stores/base.py, method by method.

Parametrised over the local store, S3 (`rclone serve s3`; moto's server for storage
classes, which rclone does not implement) and Azure Blob (Azurite); each test gets a fresh
bucket, container or directory.
"""

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.plugins.object_stores import (
    AzuriteServer,
    MotoServer,
    S3Server,
    azure_metadata_sha256,
    s3_metadata_sha256,
    unique_name,
)
from workers.errors import ConfigError, NotFoundError, PermanentError
from workers.stores.azure_blob import AzureBlobStore
from workers.stores.base import ObjectStore, UploadedPart
from workers.stores.local import LocalStore
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
MiB = 1024 * 1024
NAMESPACE, TIMESTAMP = "app", "2023-02-02t16-00-00"


@dataclass
class Kit:
    """A store under test and what the contract expects of it."""

    name: str
    store: ObjectStore
    make_missing: Callable[[], ObjectStore]  # a store whose bucket/container/dir is absent
    variable: str  # the setting a missing one is named by
    expected_url: str
    # The SHA-256 the object's metadata records, read with the store's own tools
    # (boto3's HeadObject, Azure's blob properties, getxattr), not through Backfleet.
    native_sha256: Callable[[str], str | None]
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def _local(tmp_path: Path) -> Kit:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.init()
    return Kit(
        name="local",
        store=store,
        make_missing=lambda: LocalStore(tmp_path / unique_name()),
        variable="OBJECT_STORE_LOCATION_LOCAL",
        expected_url=f"file://{root}/{NAMESPACE}/{TIMESTAMP}/",
        native_sha256=lambda key: os.getxattr(root / key, "user.sha256").decode(),
    )


def _s3(server: S3Server, bucket: str) -> Kit:
    cleanups: list[Callable[[], None]] = []

    def make_missing() -> ObjectStore:
        name = unique_name()
        cleanups.append(lambda: server.delete_bucket(name))
        return S3Store.from_settings(server.make_settings(name))

    return Kit(
        name="s3",
        store=S3Store.from_settings(server.make_settings(bucket)),
        make_missing=make_missing,
        variable="AWS_S3_BUCKET_NAME",
        expected_url=(
            f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?region=us-west-2"
            f"&prefix={NAMESPACE}/{TIMESTAMP}/&showversions=false"
        ),
        native_sha256=lambda key: s3_metadata_sha256(server, bucket, key),
        cleanups=cleanups,
    )


def _azure(server: AzuriteServer, container: str) -> Kit:
    cleanups: list[Callable[[], None]] = []

    def make_missing() -> ObjectStore:
        name = unique_name()
        cleanups.append(lambda: server.delete_container(name))
        return AzureBlobStore.from_settings(server.make_settings(name))

    return Kit(
        name="azure",
        store=AzureBlobStore.from_settings(server.make_settings(container)),
        make_missing=make_missing,
        variable="AZURE_STORAGE_CONTAINER_NAME",
        expected_url=f"{server.service_url}{container}/{NAMESPACE}/{TIMESTAMP}/",
        native_sha256=lambda key: azure_metadata_sha256(server, container, key),
        cleanups=cleanups,
    )


@pytest.fixture(params=["local", "s3", "azure"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    """Servers start only for the stores actually selected."""
    if request.param == "s3":
        made = _s3(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    elif request.param == "azure":
        server = request.getfixturevalue("azurite_server")
        made = _azure(server, request.getfixturevalue("azure_container"))
    else:
        made = _local(tmp_path)
    try:
        yield made
    finally:
        for cleanup in made.cleanups:
            cleanup()


def _read_all(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


def _parts() -> list[bytes]:
    """Three parts that every store accepts: S3 wants 5 MiB but for the last one."""
    return [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(12345)]


def _upload(kit: Kit, key: str, upload_id: str, parts: list[bytes]) -> list[UploadedPart]:
    numbers = list(range(1, len(parts) + 1))
    if kit.store.parallel_parts:
        numbers = numbers[::-1]  # parallel stores must take parts in any order
    receipts = [kit.store.upload_part(key, upload_id, n, parts[n - 1]) for n in numbers]
    return sorted(receipts, key=lambda part: part.number)


def test_multipart_upload_appears_only_when_complete(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/db.pgdump.zst"
    parts = _parts()
    upload_id = store.create_upload(key)
    receipts = _upload(kit, key, upload_id, parts)
    assert [(p.number, p.size) for p in receipts] == [(n, len(d)) for n, d in enumerate(parts, 1)]

    assert not store.exists(key)
    assert list(store.list(NAMESPACE + "/")) == []
    with pytest.raises(NotFoundError):
        store.open_read(key)

    store.complete_upload(key, upload_id, receipts)
    assert store.exists(key)
    assert _read_all(store, key) == b"".join(parts)
    assert [(info.key, info.size) for info in store.list(NAMESPACE + "/")] == [
        (key, sum(map(len, parts)))
    ]
    assert upload_id not in {u.upload_id for u in store.list_uploads(NAMESPACE + "/")}


def test_an_empty_upload_makes_an_empty_object(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/empty.tar"
    upload_id = store.create_upload(key)
    part = store.upload_part(key, upload_id, 1, b"")  # what the pipeline sends for no bytes
    assert store.resume_upload(key, upload_id, [part])
    store.complete_upload(key, upload_id, [part])
    assert _read_all(store, key) == b""
    assert [(i.key, i.size) for i in store.list(NAMESPACE)] == [(key, 0)]


def test_abort_leaves_nothing(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/aborted.tar"
    upload_id = store.create_upload(key)
    receipts = [store.upload_part(key, upload_id, n, os.urandom(1000)) for n in (1, 2)]
    assert upload_id in {u.upload_id for u in store.list_uploads(NAMESPACE + "/")}

    store.abort_upload(key, upload_id)
    store.abort_upload(key, upload_id)  # twice is fine
    assert not store.exists(key)
    assert list(store.list("")) == []
    assert list(store.list_uploads("")) == []
    assert not store.resume_upload(key, upload_id, receipts)


def test_abort_leaves_an_existing_object_alone(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/manifest.json"
    store.put_object(key, b"{}")
    upload_id = store.create_upload(key)
    store.upload_part(key, upload_id, 1, b"new content")
    store.abort_upload(key, upload_id)
    assert _read_all(store, key) == b"{}"


def test_resume_upload(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/resumed.sqlite"
    parts = [os.urandom(5 * MiB), os.urandom(777)]
    upload_id = store.create_upload(key)
    first = store.upload_part(key, upload_id, 1, parts[0])
    second = store.upload_part(key, upload_id, 2, parts[1])

    assert store.resume_upload(key, upload_id, [first, second])
    wrong_size = UploadedPart(number=2, size=second.size + 1, etag=second.etag)
    assert not store.resume_upload(key, upload_id, [first, wrong_size])
    never_sent = UploadedPart(number=3, size=10, etag="")
    assert not store.resume_upload(key, upload_id, [first, second, never_sent])
    if kit.name != "local":  # the local store's receipt is an offset it does not re-check
        wrong_etag = UploadedPart(number=2, size=second.size, etag='"0123456789abcdef"')
        assert not store.resume_upload(key, upload_id, [first, wrong_etag])
    without_etag = UploadedPart(number=2, size=second.size, etag="")
    assert store.resume_upload(key, upload_id, [first, without_etag])

    store.complete_upload(key, upload_id, [first, second])
    assert _read_all(store, key) == b"".join(parts)


def test_resume_upload_after_abort_is_false(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/gone.tar"
    upload_id = store.create_upload(key)
    part = store.upload_part(key, upload_id, 1, b"some bytes")
    store.abort_upload(key, upload_id)
    assert not store.resume_upload(key, upload_id, [part])


def test_list_uploads_finds_an_unfinished_upload(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/unfinished.tar"
    assert list(store.list_uploads("")) == []  # a new bucket (rclone once answered NoSuchUpload)
    upload_id = store.create_upload(key)
    store.upload_part(key, upload_id, 1, b"started")  # Azure: an upload exists from its first block
    found = [u for u in store.list_uploads(f"{NAMESPACE}/") if u.upload_id == upload_id]
    assert [u.key for u in found] == [key]
    assert found[0].started is not None
    assert list(store.list_uploads("elsewhere/")) == []
    store.abort_upload(key, upload_id)
    assert upload_id not in {u.upload_id for u in store.list_uploads("")}


def test_put_and_stream_a_large_object(kit: Kit) -> None:
    store, key = kit.store, f"{NAMESPACE}/{TIMESTAMP}/big.bin"
    data = os.urandom(40 * MiB)
    store.put_object(key, data)
    digest, total = hashlib.sha256(), 0
    with store.open_read(key) as handle:
        while chunk := handle.read(MiB):
            assert len(chunk) <= MiB
            digest.update(chunk)
            total += len(chunk)
    assert (total, digest.hexdigest()) == (len(data), hashlib.sha256(data).hexdigest())


def test_put_replaces_and_empty_objects_read_back(kit: Kit) -> None:
    store = kit.store
    store.put_object("ns/manifest.json", b"first")
    store.put_object("ns/manifest.json", b"second")
    assert _read_all(store, "ns/manifest.json") == b"second"
    store.put_object("ns/empty", b"")
    assert _read_all(store, "ns/empty") == b""
    assert [(i.key, i.size) for i in store.list("ns/")] == [
        ("ns/empty", 0),
        ("ns/manifest.json", 6),
    ]


def test_open_read_of_a_missing_key(kit: Kit) -> None:
    with pytest.raises(NotFoundError):
        kit.store.open_read(f"{NAMESPACE}/{TIMESTAMP}/missing.json")


def test_list_exists_delete(kit: Kit) -> None:
    store = kit.store
    keys = ["ns/b/2", "ns/a/1", "ns/a/10", "ns/a/2", "other/x", "ns-x/y"]
    for index, key in enumerate(keys):
        store.put_object(key, b"x" * index)
    assert [i.key for i in store.list("ns/")] == ["ns/a/1", "ns/a/10", "ns/a/2", "ns/b/2"]
    assert [i.key for i in store.list("ns")] == [
        "ns-x/y",
        "ns/a/1",
        "ns/a/10",
        "ns/a/2",
        "ns/b/2",
    ]
    assert [i.key for i in store.list("")] == sorted(keys)
    assert [(i.key, i.size) for i in store.list("ns/a/1")] == [("ns/a/1", 1), ("ns/a/10", 2)]
    assert all(i.modified is not None for i in store.list(""))
    assert list(store.list("nothing/")) == []

    assert store.exists("ns/a/1") and not store.exists("ns/a/3") and not store.exists("ns/a")
    store.delete("ns/a/1")
    store.delete("ns/a/1")  # deleting what is gone is fine
    assert not store.exists("ns/a/1")
    assert [i.key for i in store.list("ns/a/")] == ["ns/a/10", "ns/a/2"]


def test_url_for(kit: Kit) -> None:
    assert kit.store.url_for(NAMESPACE, TIMESTAMP) == kit.expected_url


def test_check_names_a_missing_bucket_and_init_creates_it(kit: Kit) -> None:
    kit.store.check()  # the fixture's own bucket is there
    missing = kit.make_missing()
    with pytest.raises(ConfigError, match=kit.variable) as raised:
        missing.check()
    assert "backfleet store init" in str(raised.value)
    missing.init()
    missing.check()
    missing.init()  # again: nothing to do
    missing.put_object("a/b", b"works")
    assert _read_all(missing, "a/b") == b"works"


def test_every_object_carries_its_sha256_in_the_stores_own_metadata(kit: Kit) -> None:
    """A PutObject and a completed multipart upload each carry the SHA-256 of their bytes
    where the store's own tools see it (head-object, blob properties, getfattr)."""
    store = kit.store
    small, small_key = b'{"manifest": true}', f"{NAMESPACE}/{TIMESTAMP}/manifest.json"
    store.put_object(small_key, small)
    key, parts = f"{NAMESPACE}/{TIMESTAMP}/db.pgdump.zst", _parts()
    upload_id = store.create_upload(key)
    whole = hashlib.sha256(b"".join(parts)).hexdigest()
    store.complete_upload(key, upload_id, _upload(kit, key, upload_id, parts), sha256=whole)
    empty_key = f"{NAMESPACE}/{TIMESTAMP}/empty.tar"
    upload_id = store.create_upload(empty_key)
    empty = hashlib.sha256(b"").hexdigest()
    store.complete_upload(
        empty_key, upload_id, [store.upload_part(empty_key, upload_id, 1, b"")], sha256=empty
    )

    for name in (small_key, key, empty_key):
        stored = hashlib.sha256(_read_all(store, name)).hexdigest()  # downloaded and hashed
        assert kit.native_sha256(name) == stored, name
        assert store.stored_sha256(name) == stored, name
    assert hashlib.sha256(small).hexdigest() == kit.native_sha256(small_key)
    assert whole == kit.native_sha256(key)

    plain_key = f"{NAMESPACE}/{TIMESTAMP}/plain.tar"  # completed without a digest: none recorded
    upload_id = store.create_upload(plain_key)
    store.complete_upload(plain_key, upload_id, [store.upload_part(plain_key, upload_id, 1, b"x")])
    assert store.stored_sha256(plain_key) is None
    with pytest.raises(NotFoundError):
        store.stored_sha256(f"{NAMESPACE}/{TIMESTAMP}/missing.json")


# --- storage classes: moving colder, archive classes, rehydration --------------------------
# rclone serve s3 implements no storage class: S3's are shown on moto's server.


@pytest.fixture(params=["local", "s3", "azure"])
def tiered(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """A store of each kind for the storage-class contract (S3: moto's server)."""
    if request.param == "local":
        yield _local(tmp_path).store
    elif request.param == "azure":
        server = request.getfixturevalue("azurite_server")
        yield AzureBlobStore.from_settings(
            server.make_settings(request.getfixturevalue("azure_container"))
        )
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket = unique_name()
        moto.create_bucket(bucket)
        try:
            yield S3Store.from_settings(moto.make_settings(bucket))
        finally:
            moto.delete_bucket(bucket)


def _multipart(store: ObjectStore, key: str, data: bytes) -> None:
    upload_id = store.create_upload(key)
    part = store.upload_part(key, upload_id, 1, data)
    store.complete_upload(key, upload_id, [part], sha256=hashlib.sha256(data).hexdigest())


def test_a_new_object_is_in_the_default_class_and_its_facts_read_without_a_read(
    tiered: ObjectStore,
) -> None:
    store, key, data = tiered, f"{NAMESPACE}/{TIMESTAMP}/db.sqlite.zst", os.urandom(70_000)
    _multipart(store, key, data)
    assert store.storage_class_of(key) == store.default_storage_class
    facts = store.stored_facts(key)
    assert (facts.size, facts.storage_class) == (len(data), store.default_storage_class)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    assert store.rehydrate(key)  # nothing to bring back
    with pytest.raises(NotFoundError):
        store.storage_class_of(f"{NAMESPACE}/{TIMESTAMP}/missing")
    with pytest.raises(NotFoundError):
        store.stored_facts(f"{NAMESPACE}/{TIMESTAMP}/missing")


def test_moving_colder_keeps_the_bytes_and_metadata_and_archive_needs_a_rehydration(
    tiered: ObjectStore,
) -> None:
    store, key, data = tiered, f"{NAMESPACE}/{TIMESTAMP}/files.tar.zst", os.urandom(70_000)
    _multipart(store, key, data)
    digest = hashlib.sha256(data).hexdigest()
    if not store.storage_classes:  # one class: nothing moves, nothing is ever archived
        with pytest.raises(PermanentError, match="single storage class"):
            store.set_storage_class(key, "STANDARD_IA")
        store.extend_lock(key, datetime.now(UTC) + timedelta(days=1))  # object_lock False
        assert store.locked_until(key) is None
        return
    assert store.storage_classes[0] == store.default_storage_class
    online = [c for c in store.storage_classes[1:] if c not in store.archive_classes]
    for storage_class in online:
        store.set_storage_class(key, storage_class)
        store.set_storage_class(key, storage_class)  # there already: nothing happens
        assert store.storage_class_of(key) == storage_class
        assert _read_all(store, key) == data
        assert store.stored_sha256(key) == digest
    archive = store.storage_classes[-1]
    assert archive in store.archive_classes
    store.set_storage_class(key, archive)
    assert store.storage_class_of(key) == archive
    # An archived object cannot be read as it is, and the error says why (not "credentials").
    with pytest.raises(PermanentError, match=r"archived|Archive tier") as refused:
        _read_all(store, key)
    assert not isinstance(refused.value, ConfigError)
    facts = store.stored_facts(key)  # but what the store says of it reads
    assert (facts.size, facts.sha256, facts.storage_class) == (len(data), digest, archive)
    with pytest.raises(PermanentError, match=r"rehydrat|restored"):  # no move out of archive
        store.set_storage_class(key, online[0])
    assert store.rehydrate(key)  # both servers bring it back at once (AWS, Azure: hours)
    assert _read_all(store, key) == data
    assert store.rehydrate(key)  # asked again: readable, nothing new is asked
