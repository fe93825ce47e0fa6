"""Storage tiers on moto's S3 server: moves keep the Object Lock and drop (or keep) the
replaced version, a lock is extended but never shortened, S3's own SHA-256 of a moved
object is read back without a read.

moto's server (5.x) implements storage classes on CopyObject, InvalidObjectState on a GET
of an unrestored GLACIER/DEEP_ARCHIVE object, RestoreObject (done at once), Object Lock
retention per version, versioning and GetObjectAttributes' Checksum. It does not refuse a
shortened retention (AWS does, in COMPLIANCE mode): Backfleet never asks for one, which
is what is shown here. rclone serve s3 implements none of these.
"""

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.plugins.object_stores import MotoServer, unique_name
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
KEY = "app/2026-01-10t00-00-00/db.sqlite.zst"


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    yield moto_server
    moto_server.reset()  # every bucket goes, locked objects too


def store_on(moto: MotoServer, **overrides: Any) -> S3Store:
    store = S3Store.from_settings(moto.make_settings(unique_name(), **overrides))
    store.init()  # with Object Lock when a mode is set, as `backfleet store init` does
    return store


def versions(moto: MotoServer, store: S3Store, key: str) -> list[dict[str, Any]]:
    listed = moto.client().list_object_versions(Bucket=store.config.bucket, Prefix=key)
    return list(listed.get("Versions", []))


def head(moto: MotoServer, store: S3Store, key: str, **extra: Any) -> dict[str, Any]:
    return dict(moto.client().head_object(Bucket=store.config.bucket, Key=key, **extra))


def test_a_move_keeps_the_lock_and_leaves_the_locked_version(moto: MotoServer) -> None:
    store = store_on(
        moto,
        aws_s3_object_lock_mode="GOVERNANCE",
        aws_s3_object_lock_days=30,
        aws_s3_sha256_metadata=False,
    )
    data = os.urandom(50_000)
    store.put_object(KEY, data)  # a PutObject carries its retention on moto too
    before = head(moto, store, KEY)
    until = before["ObjectLockRetainUntilDate"]

    store.set_storage_class(KEY, "STANDARD_IA")

    after = head(moto, store, KEY)
    assert after["StorageClass"] == "STANDARD_IA"
    assert after["VersionId"] != before["VersionId"]  # a copy: a new version
    assert (after["ObjectLockMode"], after["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    assert after["Metadata"] == before["Metadata"]  # x-amz-meta-sha256 kept
    # The replaced version is locked: it cannot be deleted and stays, noncurrent.
    listed = versions(moto, store, KEY)
    assert sorted(v["VersionId"] for v in listed) == sorted(
        [before["VersionId"], after["VersionId"]]
    )
    with store.open_read(KEY) as handle:
        assert handle.read() == data


def test_a_move_on_a_versioned_bucket_drops_the_replaced_version(moto: MotoServer) -> None:
    store = store_on(moto)
    moto.client().put_bucket_versioning(
        Bucket=store.config.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    store.put_object(KEY, b"manifest-sized")
    store.set_storage_class(KEY, "GLACIER_IR")
    (only,) = versions(moto, store, KEY)  # not paid for twice: the old version is gone
    assert only["StorageClass"] == "GLACIER_IR"


def test_a_lock_is_extended_but_never_shortened(moto: MotoServer) -> None:
    store = store_on(moto, aws_s3_object_lock_mode="COMPLIANCE", aws_s3_object_lock_days=1)
    store.put_object(KEY, b"locked")
    until = store.locked_until(KEY)
    assert until is not None

    store.extend_lock(KEY, until - timedelta(hours=12))  # earlier: nothing changes
    assert store.locked_until(KEY) == until
    later = (until + timedelta(days=30)).replace(microsecond=0)
    store.extend_lock(KEY, later)
    assert store.locked_until(KEY) == later
    assert head(moto, store, KEY)["ObjectLockMode"] == "COMPLIANCE"  # its own mode kept

    # An object written without a retention (moto keeps none for a multipart upload)
    # gets AWS_S3_OBJECT_LOCK_MODE's.
    bare = "app/2026-01-10t00-00-00/files.tar.zst"
    upload_id = store.create_upload(bare)
    store.complete_upload(bare, upload_id, [store.upload_part(bare, upload_id, 1, b"x")])
    if store.locked_until(bare) is None:
        store.extend_lock(bare, later)
        assert store.locked_until(bare) == later


def test_s3s_own_sha256_of_a_moved_object_is_read_without_a_read(moto: MotoServer) -> None:
    """With AWS_S3_CHECKSUM_ALGORITHM=SHA256 the copy that sets x-amz-meta-sha256, and the
    copy that moves the object, each ask S3 for the SHA-256 of the whole new object."""
    store = store_on(moto, aws_s3_checksum_algorithm="SHA256")
    data = os.urandom(6 * 1024 * 1024 + 5)
    digest = hashlib.sha256(data).hexdigest()
    upload_id = store.create_upload(KEY)
    parts = [
        store.upload_part(KEY, upload_id, 1, data[: 5 * 1024 * 1024]),
        store.upload_part(KEY, upload_id, 2, data[5 * 1024 * 1024 :]),
    ]
    store.complete_upload(KEY, upload_id, parts, sha256=digest)
    assert store.stored_facts(KEY).checksums.get("SHA256") == digest

    store.set_storage_class(KEY, "DEEP_ARCHIVE")
    facts = store.stored_facts(KEY)  # no GET: the object cannot be read as it is
    assert (facts.storage_class, facts.size, facts.sha256) == ("DEEP_ARCHIVE", len(data), digest)
    assert facts.checksums.get("SHA256") == digest
    assert "Restore" not in head(moto, store, KEY)  # nothing was asked back


def test_a_rehydration_asks_once_and_reads_after(moto: MotoServer) -> None:
    store = store_on(moto, rehydration_days=3)
    store.put_object(KEY, b"cold bytes")
    store.set_storage_class(KEY, "DEEP_ARCHIVE")
    start = datetime.now(UTC)
    assert store.rehydrate(KEY)  # moto restores at once; AWS takes up to 12 h (Standard)
    restored = head(moto, store, KEY)
    assert 'ongoing-request="false"' in restored["Restore"]
    expiry = restored["Restore"].split('expiry-date="', 1)[1].rstrip('"')
    assert parsedate_to_datetime(expiry) > start + timedelta(days=2)  # REHYDRATION_DAYS
    with store.open_read(KEY) as handle:
        assert handle.read() == b"cold bytes"


def test_a_move_keeps_the_objects_own_encryption(moto: MotoServer) -> None:
    """A copy takes the bucket's default encryption unless given the object's again."""
    key_id = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    store = store_on(moto, aws_s3_sse="aws:kms", aws_s3_sse_kms_key_id=key_id)
    store.put_object(KEY, b"secret-ish")
    store.set_storage_class(KEY, "STANDARD_IA")
    after = head(moto, store, KEY)
    assert (after["ServerSideEncryption"], after["SSEKMSKeyId"]) == ("aws:kms", key_id)
    assert after["StorageClass"] == "STANDARD_IA"


def test_a_move_whose_relock_failed_is_relocked_by_the_next_pass(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second review, finding 5: the copy done, PutObjectRetention failing, left the new
    version unlocked; the next pass found it "moved already" and never locked it."""
    store = store_on(
        moto,
        aws_s3_object_lock_mode="GOVERNANCE",
        aws_s3_object_lock_days=30,
        aws_s3_sha256_metadata=False,
    )
    store.put_object(KEY, os.urandom(10_000))
    until = head(moto, store, KEY)["ObjectLockRetainUntilDate"]
    real_retain = store._retain

    def cut_off(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("cut off before PutObjectRetention")

    monkeypatch.setattr(store, "_retain", cut_off)
    with pytest.raises(ConnectionError):
        store.set_storage_class(KEY, "STANDARD_IA")
    moved = head(moto, store, KEY)
    assert moved["StorageClass"] == "STANDARD_IA" and "ObjectLockMode" not in moved

    monkeypatch.setattr(store, "_retain", real_retain)
    store.set_storage_class(KEY, "STANDARD_IA")  # the next pass: "moved already"
    after = head(moto, store, KEY)
    assert (after["ObjectLockMode"], after["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
    assert after["VersionId"] == moved["VersionId"]  # no second copy
