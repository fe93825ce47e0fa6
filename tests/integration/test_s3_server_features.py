"""S3 Object Lock, server-side encryption and part checksums against a real S3 server.

Real backups (and a restore) run against moto's server (`moto_server`, an S3 API
server in its own process) through a fault proxy that injects nothing and only
records the requests; boto3 then asks the server what it recorded.

What moto's server (5.x) implements, read in its source (moto/s3/responses.py,
models.py) and shown here:
- SSE: the `x-amz-server-side-encryption` and `-aws-kms-key-id` headers of a PutObject
  and a CreateMultipartUpload are kept per object and answered by HEAD.
- Checksums: the algorithm named at CreateMultipartUpload is kept, and at completion
  the server computes the object's COMPOSITE checksum from the bytes it holds; a
  PutObject's `x-amz-checksum-*` value is kept as sent. The test compares both with
  checksums it computes itself (zlib, the crc32c package, hashlib).
- Object Lock: a bucket made with Object Lock (by `backfleet store init`), a PutObject's
  retention mode and date, the refusal of a locked version's deletion, and the refusal
  of locked writes that carry neither Content-MD5 nor a checksum (Backfleet sends MD5
  when AWS_S3_CHECKSUM_ALGORITHM=none).

What stays shown only by the requests Backfleet sends, and why:
- moto ignores Object Lock headers on CreateMultipartUpload, so the artifacts (all
  multipart) carry no retention there; the test checks the headers each
  CreateMultipartUpload carried, and what the server recorded wherever it records it.
- moto verifies no checksum (its source: "TODO: AWS computes the provided value and
  verifies it's the same"), nor does it keep per-part checksums: each part's header is
  checked against the part's bytes here, and refusal of a damaged part is shown
  against rclone serve s3 and Azurite in test_part_checksums.py.
- No encryption happens (moto keeps plaintext in RAM) and a KMS key id is not looked
  up (no KMS.NotFoundException): only AWS can show a key policy at work.
"""

import base64
import hashlib
import os
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import crc32c
import pytest
from botocore.exceptions import ClientError

from tests.faultproxy import FaultProxy, Request
from tests.health_fleet import make_fleet, take_backup
from tests.plugins.object_stores import MotoServer, unique_name
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.fleet import Fleet
from workers.operations.restore import run_restore
from workers.operations.retention import locked_until
from workers.repository.manifest import Manifest, manifest_key
from workers.stores import make_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
MiB = 1024 * 1024
KMS_KEY = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "CRC32C": lambda data: int(crc32c.crc32c(data)).to_bytes(4, "big"),
    "SHA256": lambda data: hashlib.sha256(data).digest(),
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).digest(),
}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    yield moto_server
    moto_server.reset()  # every bucket goes, locked objects too
    dispose_engines()


@pytest.fixture
def recorder(moto: MotoServer) -> Iterator[FaultProxy]:
    """A proxy in front of moto that injects nothing and records every request."""
    with FaultProxy(("127.0.0.1", moto.port), lifetime=170) as proxy:
        yield proxy


def backed_up(
    tmp_path: Path, moto: MotoServer, proxy: FaultProxy, **overrides: Any
) -> tuple[Fleet, str, list[Request], dict[str, bytes]]:
    """A real backup through the recorder: fleet, stamp, requests, stored objects."""
    settings = moto.make_settings(unique_name(), aws_s3_endpoint_url=proxy.url, **overrides)
    store = make_store(settings)
    store.init()  # as `backfleet store init` does: with Object Lock when a mode is set
    fleet = make_fleet(tmp_path, store=store, settings=settings)
    noise = tmp_path / "data" / "files" / "noise.bin"
    noise.write_bytes(os.urandom(11 * MiB))  # three 5 MiB parts
    stamp = take_backup(fleet)
    requests = list(proxy.requests)
    client = moto.client()
    bucket = settings.aws_s3_bucket_name
    objects = {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in client.list_objects_v2(Bucket=bucket, Prefix=f"app/{stamp}/")["Contents"]
    }
    return fleet, stamp, requests, objects


def parts_sent(requests: list[Request], bucket: str, key: str) -> list[Request]:
    """The last UploadPart of each part number of `key`, in part order."""
    latest: dict[int, Request] = {}
    for request in requests:
        target = urlsplit(request.target)
        query = parse_qs(target.query)
        mine = unquote(target.path) == f"/{bucket}/{key}"
        if request.method == "PUT" and mine and "partNumber" in query:
            latest[int(query["partNumber"][0])] = request
    return [latest[number] for number in sorted(latest)]


def creations(requests: list[Request], bucket: str, key: str) -> list[Request]:
    return [
        r
        for r in requests
        if r.method == "POST"
        and unquote(urlsplit(r.target).path) == f"/{bucket}/{key}"
        and "uploads" in parse_qs(urlsplit(r.target).query, keep_blank_values=True)
    ]


def manifest_of(objects: dict[str, bytes], stamp: str) -> Manifest:
    return Manifest.from_bytes(objects[manifest_key("app", stamp)])


@pytest.mark.parametrize(
    ("algorithm", "sse", "kms_key"),
    [
        ("CRC32", "AES256", None),
        ("CRC32C", "aws:kms", KMS_KEY),
        ("SHA256", "aws:kms", None),
        ("MD5", "AES256", None),
    ],
)
def test_a_backup_is_stored_encrypted_with_the_chosen_checksums(
    tmp_path: Path,
    moto: MotoServer,
    recorder: FaultProxy,
    algorithm: str,
    sse: str,
    kms_key: str | None,
) -> None:
    fleet, stamp, requests, objects = backed_up(
        tmp_path,
        moto,
        recorder,
        aws_s3_checksum_algorithm=algorithm,
        aws_s3_sse=sse,
        aws_s3_sse_kms_key_id=kms_key,
        # The copy that sets x-amz-meta-sha256 would replace the composite checksum
        # checked below; test_sha256_metadata.py shows that copy on this server.
        aws_s3_sha256_metadata=False,
    )
    bucket, client, digest = fleet.settings.aws_s3_bucket_name, moto.client(), DIGESTS[algorithm]
    manifest = manifest_of(objects, stamp)
    assert sorted(objects) == sorted(
        [e.key for e in manifest.artifacts] + [manifest_key("app", stamp)]
    )

    for key in objects:  # SSE, as the server recorded it on every object
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == sse, key
        assert head.get("SSEKMSKeyId") == kms_key, key

    big = next(e for e in manifest.artifacts if e.size > 10 * MiB)
    for entry in manifest.artifacts:  # each part's checksum header, against its bytes
        data, parts = objects[entry.key], parts_sent(requests, bucket, entry.key)
        assert sum(part.body_size for part in parts) == len(data) == entry.size
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        offset, digests = 0, []
        for part in parts:
            raw = digest(data[offset : offset + part.body_size])
            offset += part.body_size
            digests.append(raw)
            if algorithm == "MD5":
                assert part.header("content-md5") == b64(raw)
            else:
                assert part.header("x-amz-sdk-checksum-algorithm") == algorithm
                assert part.header(f"x-amz-checksum-{algorithm.lower()}") == b64(raw)
        # The object's checksum, computed by the server from the parts it holds.
        attributes = client.get_object_attributes(
            Bucket=bucket, Key=entry.key, ObjectAttributes=["Checksum", "ETag"]
        )
        if algorithm == "MD5":
            whole = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
            assert attributes["ETag"] == f"{whole}-{len(parts)}"
        else:
            checksum = attributes["Checksum"]
            assert checksum["ChecksumType"] == "COMPOSITE"
            assert checksum[f"Checksum{algorithm}"].split("-")[0] == b64(digest(b"".join(digests)))
    assert len(parts_sent(requests, bucket, big.key)) == 3

    manifest_bytes = objects[manifest_key("app", stamp)]  # one PutObject
    head = client.head_object(Bucket=bucket, Key=manifest_key("app", stamp), ChecksumMode="ENABLED")
    if algorithm == "MD5":
        assert head["ETag"].strip('"') == hashlib.md5(manifest_bytes).hexdigest()
    else:
        assert head[f"Checksum{algorithm}"] == b64(digest(manifest_bytes))

    # And the backup restores from that server, byte for byte.
    noise = tmp_path / "data" / "files" / "noise.bin"
    before = noise.read_bytes()
    noise.write_bytes(b"changed after the backup")
    with session_scope(fleet.settings.database_url) as session:
        restore_id = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=stamp,
            services=["db", "files"],
            skipped=[],
            backup_url="x",
        ).id
    assert run_restore(fleet, restore_id=restore_id) == "Success"
    assert noise.read_bytes() == before


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_a_backup_is_stored_under_object_lock(
    tmp_path: Path, moto: MotoServer, recorder: FaultProxy, mode: str
) -> None:
    start = datetime.now(UTC)
    # checksum none: a locked write then needs Content-MD5, which moto (as AWS) demands.
    fleet, stamp, requests, objects = backed_up(
        tmp_path,
        moto,
        recorder,
        aws_s3_object_lock_mode=mode,
        aws_s3_object_lock_days=3,
        aws_s3_checksum_algorithm="none",
    )
    end = datetime.now(UTC)
    bucket, client = fleet.settings.aws_s3_bucket_name, moto.client()
    lock = client.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"  # made so by store init

    key = manifest_key("app", stamp)  # a PutObject: moto records its retention
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == mode
    until = head["ObjectLockRetainUntilDate"].astimezone(UTC)
    slack = timedelta(seconds=2)  # the header has whole seconds
    assert start + timedelta(days=3) - slack <= until <= end + timedelta(days=3) + slack
    assert locked_until(fleet.store, "app", stamp) is not None  # so retention keeps it
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    for entry in manifest_of(objects, stamp).artifacts:  # multipart: see the docstring
        (created,) = creations(requests, bucket, entry.key)
        assert created.header("x-amz-object-lock-mode") == mode
        sent_until = datetime.fromisoformat(created.header("x-amz-object-lock-retain-until-date"))
        assert abs(sent_until - until) < timedelta(seconds=60)
        offset = 0
        for part in parts_sent(requests, bucket, entry.key):  # AWS demands an MD5 here
            piece = objects[entry.key][offset : offset + part.body_size]
            offset += part.body_size
            assert part.header("content-md5") == b64(DIGESTS["MD5"](piece))
        head = client.head_object(Bucket=bucket, Key=entry.key)
        if "ObjectLockMode" in head:  # a moto that keeps multipart retention
            assert head["ObjectLockMode"] == mode
