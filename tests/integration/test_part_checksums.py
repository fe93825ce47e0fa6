"""Each part is checked by the server: a part damaged on the wire is refused, then sent again.

A fault proxy flips one byte of one part's body (an UploadPart PUT, or an Azure Put
Block) between Backfleet and a real server, and a real backup runs through it. The
test fails unless all three hold: the proxy did damage a part, the server refused
that part, and the backup ended Success with every stored object's bytes matching
the SHA-256 its manifest records (so the damaged bytes were never kept).

Which server checks what (read in their sources and tried here):
- rclone serve s3 verifies Content-MD5 (BadDigest) but not the x-amz-checksum-*
  headers, so the S3 case runs with AWS_S3_CHECKSUM_ALGORITHM=MD5; AWS verifies all.
- Azurite verifies the Content-MD5 of a Put Block (answering InvalidOperation where
  Azure answers Md5Mismatch), not CRC64; Backfleet sends Content-MD5 on every block.
- moto's server verifies neither (its source says "TODO: AWS computes the provided
  value and verifies it's the same"): it cannot prove this.
"""

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.faultproxy import Fault, FaultProxy, Request
from tests.health_fleet import make_fleet
from tests.plugins.object_stores import AzuriteServer, S3Server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import FAILED, SUCCESS
from workers.fleet import Fleet
from workers.operations.backup import run_backup
from workers.repository.manifest import Manifest, artifact_key, manifest_key
from workers.settings import Settings
from workers.stores import ObjectStore, make_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
MiB = 1024 * 1024


def _s3_part(request: Request) -> bool:
    return request.method == "PUT" and "partNumber=" in request.target


def _azure_part(request: Request) -> bool:
    return request.method == "PUT" and "blockid=" in request.target  # not comp=blocklist


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def _through(
    request: pytest.FixtureRequest, kind: str, proxy: FaultProxy
) -> tuple[Settings, Settings]:
    """The store's settings through the proxy, and straight to the server."""
    if kind == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        # MD5: the one checksum rclone verifies (CRC32, CRC32C and SHA256 it takes on trust).
        direct = s3.make_settings(bucket, aws_s3_checksum_algorithm="MD5")
        return direct.model_copy(update={"aws_s3_endpoint_url": proxy.url}), direct
    azurite: AzuriteServer = request.getfixturevalue("azurite_server")
    direct = azurite.make_settings(request.getfixturevalue("azure_container"))
    via = f"{proxy.url}/{azurite.account}/"
    return direct.model_copy(update={"azure_storage_account_service_url": via}), direct


def _upstream(request: pytest.FixtureRequest, kind: str) -> int:
    server: Any = request.getfixturevalue("s3_server" if kind == "s3" else "azurite_server")
    return int(server.port)


def _sha256(store: ObjectStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open_read(key) as handle:
        while chunk := handle.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _backup_through(
    request: pytest.FixtureRequest, kind: str, tmp_path: Path
) -> tuple[FaultProxy, Fleet, str, Settings]:
    """A real backup whose second part the proxy damages: the proxy, fleet, stamp, settings."""
    is_part = _s3_part if kind == "s3" else _azure_part
    damage = Fault("corrupt", match=is_part, nth=(2,))
    with FaultProxy(("127.0.0.1", _upstream(request, kind)), [damage], lifetime=100) as proxy:
        via, direct = _through(request, kind, proxy)
        fleet: Fleet = make_fleet(tmp_path, store=make_store(via), settings=via)
        # 11 MiB of noise: the directory's artifact spans three 5 MiB parts.
        (tmp_path / "data" / "files" / "noise.bin").write_bytes(os.urandom(11 * MiB))
        with session_scope(fleet.settings.database_url) as session:
            stamp = queries.create_backup(
                session,
                namespace="app",
                services=["db", "files"],
                only_config=False,
                trigger="test",
            ).timestamp
        run_backup(fleet, namespace="app", timestamp=stamp)
    assert proxy.by_action == {"corrupt": 1}, "the proxy damaged no part"
    return proxy, fleet, stamp, direct


def _answers_for(proxy: FaultProxy, is_part: Callable[[Request], bool]) -> dict[str, list[int]]:
    """The statuses each part got, by its object and part number (or block id), in order."""
    found: dict[str, list[int]] = {}
    for request, status in proxy.answers:
        if is_part(request):
            target = urlsplit(request.target)
            query = parse_qs(target.query)
            part = (query.get("partNumber") or query.get("blockid") or ["?"])[0]
            found.setdefault(f"{target.path} {part}", []).append(status)
    return found


def test_azure_a_block_damaged_in_flight_is_refused_and_sent_again(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    proxy, fleet, stamp, direct = _backup_through(request, "azure", tmp_path)

    statuses = _answers_for(proxy, _azure_part)
    assert sorted(statuses.values()) == [[201]] * (len(statuses) - 1) + [[400, 201]], (
        f"the damaged block was not refused, then sent again: {statuses}"
    )
    _assert_status(fleet, stamp, SUCCESS)
    stored = make_store(direct)
    with stored.open_read(manifest_key("app", stamp)) as handle:
        manifest = Manifest.from_bytes(handle.read())
    assert any(entry.size > 10 * MiB for entry in manifest.artifacts)
    for entry in manifest.artifacts:  # the damaged bytes were not kept
        assert _sha256(stored, entry.key) == entry.sha256, entry.key


def test_s3_a_part_damaged_in_flight_is_refused_and_nothing_damaged_is_stored(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    proxy, fleet, stamp, direct = _backup_through(request, "s3", tmp_path)

    statuses = _answers_for(proxy, _s3_part)
    damaged = [seen for seen in statuses.values() if seen[0] == 400]
    # BadDigest, then the part sent again. rclone sometimes drops the whole upload on a
    # bad part (AWS keeps it): then the second try finds NoSuchUpload and the backup
    # fails, storing nothing; else the resent part is taken and the backup succeeds
    # with the right bytes. Either way the damaged bytes are never kept.
    assert damaged in ([[400, 404]], [[400, 200]]), f"the damaged part was not refused: {statuses}"
    stored = make_store(direct)
    if damaged == [[400, 200]]:
        _assert_status(fleet, stamp, SUCCESS)
        with stored.open_read(manifest_key("app", stamp)) as handle:
            manifest = Manifest.from_bytes(handle.read())
        for entry in manifest.artifacts:
            assert _sha256(stored, entry.key) == entry.sha256, entry.key
        return
    error = _assert_status(fleet, stamp, FAILED)
    assert error.startswith("files: ") and "no longer holds this multipart upload" in error
    kept = [info.key for info in stored.list(f"app/{stamp}/")]
    assert artifact_key("app", stamp, "files", "tar", "zstd") not in kept, kept
    assert manifest_key("app", stamp) not in kept
    assert list(stored.list_uploads("app/")) == []


def _assert_status(fleet: Fleet, stamp: str, status: str) -> str:
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert row is not None and row.status == status, row and row.error
        return row.error or ""
