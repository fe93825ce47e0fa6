"""Every object a backup stores carries its SHA-256 in the store's own metadata, readable
without Backfleet: S3 user metadata (`x-amz-meta-sha256`, by a copy of a multipart object
onto itself), Azure blob metadata (`sha256`, set by the commit), the local store's
`user.sha256` extended attribute. Verification cross-checks it with the manifest.

Against the real servers: rclone serve s3, Azurite, a local directory; moto's server for
the part copies of an object over the single-copy limit (rclone does not implement
UploadPartCopy); a fault proxy to make the copy fail.
"""

import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faultproxy import Fault, FaultProxy, Request
from tests.health_fleet import make_fleet, take_backup
from tests.plugins.object_stores import (
    AzuriteServer,
    MotoServer,
    S3Server,
    azure_metadata_sha256,
    s3_metadata_sha256,
    unique_name,
)
from workers.catalog.db import dispose_engines
from workers.fleet import Fleet
from workers.operations.verify import verify_backups
from workers.repository.manifest import Manifest, manifest_key
from workers.stores import make_store
from workers.stores.base import ObjectStore
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
MiB = 1024 * 1024


@dataclass
class Where:
    """A fleet on one store, and the store's own ways to read and change an object's digest."""

    fleet: Fleet
    native_sha256: Callable[[str], str | None]
    set_native_sha256: Callable[[str, str], None]


def _local(tmp_path: Path) -> Where:
    fleet = make_fleet(tmp_path)
    root = tmp_path / "store"
    return Where(
        fleet,
        lambda key: os.getxattr(root / key, "user.sha256").decode(),
        lambda key, value: os.setxattr(root / key, "user.sha256", value.encode()),
    )


def _s3(tmp_path: Path, server: S3Server, bucket: str) -> Where:
    settings = server.make_settings(bucket)
    fleet = make_fleet(tmp_path, store=make_store(settings), settings=settings)

    def rewrite(key: str, value: str) -> None:  # what someone with the bucket's keys may do
        server.client().copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            MetadataDirective="REPLACE",
            Metadata={"sha256": value},
        )

    return Where(fleet, lambda key: s3_metadata_sha256(server, bucket, key), rewrite)


def _azure(tmp_path: Path, server: AzuriteServer, container: str) -> Where:
    settings = server.make_settings(container)
    fleet = make_fleet(tmp_path, store=make_store(settings), settings=settings)

    def rewrite(key: str, value: str) -> None:
        server.client().get_blob_client(container, key).set_blob_metadata({"sha256": value})

    return Where(fleet, lambda key: azure_metadata_sha256(server, container, key), rewrite)


@pytest.fixture(params=["local", "s3", "azure"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Where]:
    if request.param == "s3":
        made = _s3(
            tmp_path, request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        )
    elif request.param == "azure":
        server = request.getfixturevalue("azurite_server")
        made = _azure(tmp_path, server, request.getfixturevalue("azure_container"))
    else:
        made = _local(tmp_path)
    try:
        yield made
    finally:
        dispose_engines()


def _backup_with_a_multipart_artifact(tmp_path: Path, fleet: Fleet) -> str:
    # 11 MiB of noise: the directory's artifact is three 5 MiB parts (a multipart upload).
    (tmp_path / "data" / "files" / "noise.bin").write_bytes(os.urandom(11 * MiB))
    return take_backup(fleet)


def _read(store: ObjectStore, key: str) -> bytes:
    with store.open_read(key) as handle:
        return handle.read()


def test_every_object_of_a_backup_carries_its_sha256_in_the_stores_metadata(
    tmp_path: Path, where: Where
) -> None:
    fleet = where.fleet
    stamp = _backup_with_a_multipart_artifact(tmp_path, fleet)
    keys = [info.key for info in fleet.store.list(f"app/{stamp}/")]
    manifest_bytes = _read(fleet.store, manifest_key("app", stamp))
    manifest = Manifest.from_bytes(manifest_bytes)
    expected = [entry.key for entry in manifest.artifacts] + [manifest_key("app", stamp)]
    assert sorted(keys) == sorted(expected)
    assert max(entry.size for entry in manifest.artifacts) > 10 * MiB  # one was multipart

    for key in keys:  # downloaded and hashed here, against what the store's own tools show
        assert where.native_sha256(key) == hashlib.sha256(_read(fleet.store, key)).hexdigest()
    for entry in manifest.artifacts:  # and it agrees with the manifest
        assert where.native_sha256(entry.key) == entry.sha256
    assert where.native_sha256(manifest_key("app", stamp)) == (
        hashlib.sha256(manifest_bytes).hexdigest()
    )


def test_verification_fails_when_an_objects_recorded_sha256_was_changed(
    tmp_path: Path, where: Where
) -> None:
    fleet = where.fleet
    stamp = take_backup(fleet)
    (first,) = verify_backups(fleet, namespace="app", timestamp=stamp)
    assert first.status == "Success", first.error

    manifest = Manifest.from_bytes(_read(fleet.store, manifest_key("app", stamp)))
    entry = manifest.artifacts[0]
    where.set_native_sha256(entry.key, "0" * 64)  # the bytes stay as they were
    assert hashlib.sha256(_read(fleet.store, entry.key)).hexdigest() == entry.sha256

    (second,) = verify_backups(fleet, namespace="app", timestamp=stamp)
    assert second.status == "Failed"
    assert second.error is not None and entry.key in second.error
    assert "rewritten after it was stored" in second.error


# --- S3 only: the copy that sets x-amz-meta-sha256 ----------------------------------------


def _copies(request: Request) -> bool:
    return request.method == "PUT" and bool(request.header("x-amz-copy-source"))


def test_a_failed_copy_leaves_the_object_whole_and_the_backup_a_success(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses every CopyObject (503 after 503): the backup succeeds, its
    objects are intact and verified; the multipart one just carries no x-amz-meta-sha256."""
    with FaultProxy(
        ("127.0.0.1", s3_server.port), [Fault("error", match=_copies, fraction=1.0)], lifetime=170
    ) as proxy:
        settings = s3_server.make_settings(s3_bucket, aws_s3_endpoint_url=proxy.url)
        fleet = make_fleet(tmp_path, store=make_store(settings), settings=settings)
        with caplog.at_level(logging.WARNING, logger="workers.stores.s3.digests"):
            stamp = _backup_with_a_multipart_artifact(tmp_path, fleet)
        assert proxy.injected >= 1
        (result,) = verify_backups(fleet, namespace="app", timestamp=stamp)
        assert result.status == "Success", result.error
        manifest = Manifest.from_bytes(_read(fleet.store, manifest_key("app", stamp)))
        big = next(entry for entry in manifest.artifacts if entry.size > 10 * MiB)
        assert hashlib.sha256(_read(fleet.store, big.key)).hexdigest() == big.sha256
        assert list(fleet.store.list_uploads("")) == []
    assert s3_metadata_sha256(s3_server, s3_bucket, big.key) is None
    assert s3_metadata_sha256(s3_server, s3_bucket, manifest_key("app", stamp)) is not None
    assert any("without its x-amz-meta-sha256" in r.getMessage() for r in caplog.records)


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    yield moto_server
    moto_server.reset()


@pytest.mark.parametrize("checksum", ["SHA256", "CRC32"])
def test_an_object_over_the_single_copy_limit_gets_its_sha256_by_part_copies(
    moto: MotoServer, checksum: str
) -> None:
    """Above 5 GiB one CopyObject is refused, so the copy goes by UploadPartCopy ranges;
    shown with the limit lowered on the store (moto implements UploadPartCopy)."""
    bucket = unique_name()
    with FaultProxy(("127.0.0.1", moto.port), lifetime=170) as recorder:
        settings = moto.make_settings(
            bucket,
            aws_s3_endpoint_url=recorder.url,
            aws_s3_sse="AES256",
            aws_s3_checksum_algorithm=checksum,
        )
        store = make_store(settings)
        assert isinstance(store, S3Store)
        store.init()
        store.max_copy_size, store.copy_part_size = 1 * MiB, 5 * MiB  # type: ignore[misc]
        data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(999)]
        whole = hashlib.sha256(b"".join(data)).hexdigest()
        key = "app/2023-02-02t16-00-00/big.tar.zst"
        upload_id = store.create_upload(key)
        parts = [store.upload_part(key, upload_id, n, d) for n, d in enumerate(data, start=1)]
        store.complete_upload(key, upload_id, parts, sha256=whole)
        ranges = [r.header("x-amz-copy-source-range") for r in recorder.requests if _copies(r)]
        assert hashlib.sha256(_read(store, key)).hexdigest() == whole
        assert store.stored_sha256(key) == whole
    assert ranges == ["bytes=0-5242879", "bytes=5242880-10485759", "bytes=10485760-10486758"]

    client = moto.client()
    head: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"sha256": whole}
    assert head["ServerSideEncryption"] == "AES256"  # the copy keeps what the upload set
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
