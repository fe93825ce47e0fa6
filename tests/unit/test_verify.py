"""Verification against real backups in a local store, with a real webhook server."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

import workers.operations.verdicts
from api.main import create_app
from tests.health_fleet import capture_system_events, make_fleet, take_backup
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert, Verification
from workers.fleet import Fleet
from workers.operations.verify import backups_to_verify, verify_backups
from workers.repository.manifest import Manifest, manifest_key
from workers.transfer import crypto

KEY = "verify-test-key"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    return capture_system_events(monkeypatch, workers.operations.verdicts)


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def fleet_with(tmp_path: Path, webhook: WebhookServer, **overrides: Any) -> Fleet:
    return make_fleet(
        tmp_path,
        alert_webhook_url=SecretStr(webhook.url),
        backfleet_api_keys=SecretStr(KEY),
        alert_webhook_attempts=2,
        **overrides,
    )


def manifest_of(fleet: Fleet, timestamp: str) -> Manifest:
    with fleet.store.open_read(manifest_key("app", timestamp)) as handle:
        return Manifest.from_bytes(handle.read())


def store_path(tmp_path: Path, key: str) -> Path:
    return tmp_path / "store" / key


def test_a_good_backup_verifies_and_the_api_says_so(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    with TestClient(create_app(lambda: fleet)) as client:
        before = client.get("/athena/api/v1/backup/latest", headers={"Authorization": KEY})
        assert before.json()["verified"] is None and before.json()["verifiedAt"] is None
        results = verify_backups(fleet)
        assert [(r.timestamp, r.status, r.artifacts) for r in results] == [(stamp, "Success", 2)]
        assert results[0].bytes_read == sum(e.size for e in manifest_of(fleet, stamp).artifacts)
        latest = client.get("/athena/api/v1/backup/latest", headers={"Authorization": KEY}).json()
        detail = client.get(f"/athena/api/v1/backup/{stamp}", headers={"Authorization": KEY})
    assert latest["verified"] == "Success"
    checked = datetime.fromisoformat(latest["verifiedAt"])
    assert abs(checked - datetime.now(UTC)) < timedelta(minutes=1)
    assert detail.json()["verified"] == "Success"
    assert detail.json()["verifiedAt"] == latest["verifiedAt"]
    assert [e["name"] for e in events] == ["BackupVerified"]
    assert events[0]["params"] == {"namespace": "app", "timestamp": stamp, "check": "verification"}
    assert webhook.received == []  # nothing to alert


def test_one_changed_byte_is_caught_recorded_and_alerted_once(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    entry = manifest_of(fleet, stamp).artifact("files")
    assert entry is not None
    path = store_path(tmp_path, entry.key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    results = verify_backups(fleet)
    assert [r.status for r in results] == ["Failed"]
    assert entry.key in (results[0].error or "")
    assert "SHA-256" in (results[0].error or "") or "corrupt" in (results[0].error or "")
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None and backup.verified == "Failed"
        rows = session.query(Verification).all()
        assert [(r.status, r.kind, r.store) for r in rows] == [("Failed", "read", "primary")]
    assert [e["name"] for e in events] == ["BackupVerifyFailed"]
    assert webhook.events() == ["verify.failed"]
    body = webhook.received[0]
    assert body["namespace"] == "app" and body["timestamp"] == stamp
    assert entry.key in body["text"]
    assert "T0K3N" not in str(body)

    # Still broken tomorrow: the condition is open, so nobody is told twice.
    verify_backups(fleet)
    assert webhook.events() == ["verify.failed"]
    # Repaired (put back): the next verification succeeds and closes the condition.
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert [r.status for r in verify_backups(fleet)] == ["Success"]
    with session_scope(fleet.settings.database_url) as session:
        alert = session.query(Alert).one()
        assert alert.resolved_at is not None and alert.delivered_at is not None


def test_a_missing_object_or_manifest_fails_verification(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    entry = manifest_of(fleet, stamp).artifact("db")
    assert entry is not None
    store_path(tmp_path, entry.key).unlink()
    result = verify_backups(fleet)[0]
    assert result.status == "Failed" and entry.key in (result.error or "")
    store_path(tmp_path, manifest_key("app", stamp)).unlink()
    result = verify_backups(fleet)[0]
    assert result.status == "Failed" and "manifest" in (result.error or "")


def test_a_manifest_that_disagrees_with_the_catalog_fails(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None
        backup.artifacts[0].sha256 = "f" * 64
    result = verify_backups(fleet)[0]
    assert result.status == "Failed" and "catalog" in (result.error or "")


def test_the_sample_rotates_through_older_backups(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    fleet = fleet_with(tmp_path, webhook, verify_sample_size=2)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [take_backup(fleet, moment=start + timedelta(hours=h)) for h in range(5)]
    first = backups_to_verify(fleet, namespace="app", sample=2)
    assert first == [stamps[4], stamps[0], stamps[1]]
    verify_backups(fleet)
    # The services' newest backup was just verified, within VERIFY_EVERY: the sample only.
    second = backups_to_verify(fleet, namespace="app", sample=2)
    assert second == [stamps[2], stamps[3]]
    verify_backups(fleet)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    third = backups_to_verify(fleet, namespace="app", sample=2, now=tomorrow)
    assert third == [stamps[4], stamps[0], stamps[1]]  # due again; the least recently verified


def test_encrypted_artifacts_are_decrypted_or_at_least_hashed(
    tmp_path: Path, webhook: WebhookServer, events: list[dict[str, Any]]
) -> None:
    key = crypto.generate_key()
    fleet = fleet_with(tmp_path, webhook, backup_encryption_key=SecretStr(key))
    stamp = take_backup(fleet)
    assert manifest_of(fleet, stamp).artifacts[0].encryption is not None
    assert verify_backups(fleet)[0].status == "Success"
    keyless = fleet_with(tmp_path, webhook)  # same catalog and store, no key
    assert verify_backups(keyless)[0].status == "Success"  # size and SHA-256 only
    entry = manifest_of(fleet, stamp).artifacts[0]
    path = store_path(tmp_path, entry.key)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x80
    path.write_bytes(bytes(data))
    assert verify_backups(keyless)[0].status == "Failed"
    assert verify_backups(fleet)[0].status == "Failed"


def test_the_cli_verifies_and_exits_1_on_a_failure(
    tmp_path: Path,
    webhook: WebhookServer,
    events: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from workers.cli import main

    fleet = fleet_with(tmp_path, webhook)
    stamp = take_backup(fleet)
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    good = CliRunner().invoke(main, ["verify"])
    assert good.exit_code == 0, good.output
    assert f"Success  app/{stamp} [primary] (2 artifacts," in good.output
    assert "1 verified, 0 failed" in good.output
    entry = manifest_of(fleet, stamp).artifact("db")
    assert entry is not None
    store_path(tmp_path, entry.key).unlink()
    bad = CliRunner().invoke(main, ["verify", "--namespace", "app", "--timestamp", stamp])
    assert bad.exit_code == 1 and f"Failed   app/{stamp} [primary]: {entry.key}" in bad.output
    lone = CliRunner().invoke(main, ["verify", "--timestamp", stamp])
    assert lone.exit_code == 2 and "--timestamp needs --namespace" in lone.output
