"""Size anomalies through real backups (workers.operations.backup, in this process), a real
catalog (SQLite and PostgreSQL) and a real webhook server: a service with a history of
normal backups, then a 0-byte and a 90 %-smaller dump, each alerted and marked while the
backup stays Success; a normal one is neither, and closes the alerts."""

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select

from api.main import create_app
from tests.health_fleet import make_fleet, take_backup
from tests.webhook import WebhookServer, webhook_server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Alert, Artifact
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring import size_anomalies
from workers.settings import Settings, get_settings
from workers.transfer.crypto import generate_key

pytestmark = pytest.mark.integration

KEY = "size-anomaly-api-key"
START = datetime(2026, 11, 1, tzinfo=UTC)
NORMAL = 100_000  # bytes of random data: they compress to about as many


@dataclass
class Sized:
    """A fleet whose `dump` service (a command: `cat` of one file) dumps what a test says."""

    fleet: Fleet
    data: Path
    webhook: WebhookServer
    taken: int = 0

    @property
    def url(self) -> str:
        return self.fleet.settings.database_url

    def backup(self, size: int) -> str:
        self.data.write_bytes(os.urandom(size))
        self.taken += 1
        return take_backup(self.fleet, moment=START + timedelta(hours=self.taken))

    def marks(self, timestamp: str) -> tuple[str, str | None, dict[str, str | None]]:
        """The backup's status and mark, and each service's mark on its artifact."""
        with session_scope(self.url) as session:
            row = queries.get_backup(session, namespace="app", timestamp=timestamp)
            assert row is not None
            return row.status, row.size_anomaly, {a.service: a.size_anomaly for a in row.artifacts}

    def open_alerts(self) -> list[str]:
        with session_scope(self.url) as session:
            query = select(Alert.condition).where(
                Alert.event == "backup.size_anomaly", Alert.resolved_at.is_(None)
            )
            return sorted(session.scalars(query))


def sized_fleet(
    tmp_path: Path, webhook: WebhookServer, database_url: str, extra: str = "", **settings: object
) -> Sized:
    data = tmp_path / "dump.bin"
    # These dumps are of 100 kB: no floor, unless a test sets one.
    settings.setdefault("size_anomaly_min_bytes", 0)
    service = f"""
[namespaces.app.services.dump]
kind = "command"
dump_command = ["cat", "{data}"]
restore_command = ["sh", "-c", "cat > /dev/null"]
format = "bin"
{extra}
"""
    fleet = make_fleet(
        tmp_path,
        database_url=database_url,
        extra_services=service,
        alert_webhook_url=SecretStr(webhook.url),
        alert_webhook_attempts=1,
        backfleet_api_keys=SecretStr(KEY),
        **settings,
    )
    return Sized(fleet, data, webhook)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with webhook_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/catalog.db"
    else:
        yield request.getfixturevalue("pg_database")
    dispose_engines()


@pytest.fixture
def sized(tmp_path: Path, webhook: WebhookServer, database_url: str) -> Sized:
    return sized_fleet(tmp_path, webhook, database_url)


def metrics(client: TestClient) -> dict[tuple[str, str], float]:
    """backfleet_backup_size_anomaly by (namespace, service)."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "backfleet_backup_size_anomaly":
                found[(sample.labels["namespace"], sample.labels["service"])] = sample.value
    return found


def test_a_zero_byte_and_a_90_percent_smaller_backup_alert_and_are_marked(
    sized: Sized, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):  # the history
        sized.backup(NORMAL)
    normal = sized.backup(NORMAL)
    assert sized.webhook.events() == []
    assert sized.marks(normal) == (SUCCESS, None, {"db": None, "dump": None, "files": None})

    zero = sized.backup(0)
    smaller = sized.backup(NORMAL // 10)

    # One alert per service while it stays anomalous: the second backup is marked, not alerted.
    assert sized.webhook.events() == ["backup.size_anomaly"]
    (first,) = sized.webhook.received
    assert (first["namespace"], first["service"], first["timestamp"]) == ("app", "dump", zero)
    assert first["status"] == "open"
    assert (
        f"backup app/{zero} has an unusual size: dump: 0 bytes (the dump was empty)"
        in (first["text"])
    )
    assert "kept and counts as a successful backup" in first["text"]

    status, mark, by_service = sized.marks(zero)
    assert (status, mark) == (SUCCESS, "dump: 0 bytes (the dump was empty)")
    assert by_service == {"db": None, "dump": mark, "files": None}
    status, mark, by_service = sized.marks(smaller)
    assert status == SUCCESS and mark is not None and mark.startswith("dump: source 9.8 KiB")
    assert "dump: source 9.8 KiB, 90 % below the median 97.7 KiB of the last 5" in mark
    assert "stored" in mark  # random bytes: what is stored shrank alike
    assert by_service["dump"] == mark and by_service["db"] is None
    assert sized.open_alerts() == ["backup.size_anomaly:app:dump"]

    # Seen where backups are read: the API, /metrics and `backfleet list`.
    with TestClient(create_app(lambda: sized.fleet)) as client:
        latest = client.get("/athena/api/v1/backup/latest", headers={"Authorization": KEY})
        assert latest.json()["status"] == "Success" and latest.json()["sizeAnomaly"] == mark
        detail = client.get(f"/athena/api/v1/backup/{zero}", headers={"Authorization": KEY})
        artifacts = {a["service"]: a["sizeAnomaly"] for a in detail.json()["artifacts"]}
        assert artifacts == {
            "db": None,
            "dump": "dump: 0 bytes (the dump was empty)",
            "files": None,
        }
        assert metrics(client) == {("app", "db"): 0, ("app", "dump"): 1, ("app", "files"): 0}
    monkeypatch.setenv("DATABASE_URL", sized.url)
    get_settings.cache_clear()
    try:
        listed = json.loads(CliRunner().invoke(main, ["list", "--json"]).output)
        table = CliRunner().invoke(main, ["list"]).output
    finally:
        get_settings.cache_clear()
    assert [row["sizeAnomaly"] for row in listed][:3] == [mark, sized.marks(zero)[1], None]
    assert f"size anomaly: {mark}" in table

    # A normal backup again: not marked, and it closes the service's alert, saying so once.
    again = sized.backup(NORMAL)
    assert sized.marks(again)[1] is None
    assert sized.webhook.events() == ["backup.size_anomaly"] * 2
    assert sized.webhook.received[1]["status"] == "resolved"
    assert sized.open_alerts() == []
    with TestClient(create_app(lambda: sized.fleet)) as client:
        assert metrics(client)[("app", "dump")] == 0


def test_a_first_backup_alerts_only_when_it_is_0_bytes(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    sized = sized_fleet(tmp_path / "one", webhook, f"sqlite:///{tmp_path}/one.db")
    sized.backup(NORMAL)
    sized.backup(NORMAL // 10)  # 90 % smaller, but two backups are no history yet
    sized.backup(NORMAL * 10)
    assert webhook.events() == []

    empty = sized_fleet(tmp_path / "two", webhook, f"sqlite:///{tmp_path}/two.db")
    stamp = empty.backup(0)
    assert webhook.events() == ["backup.size_anomaly"]
    assert empty.marks(stamp)[:2] == (SUCCESS, "dump: 0 bytes (the dump was empty)")
    empty.backup(NORMAL)  # not judged (no history), so not an anomaly: it closes the alert
    assert empty.open_alerts() == []


def test_a_failing_check_leaves_the_backup_success_and_logs_no_secret(
    sized: Sized, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"catalog went away while posting to {sized.webhook.url}")

    monkeypatch.setattr(size_anomalies.reports, "service_size_history", broken)
    with caplog.at_level(logging.ERROR):
        stamp = sized.backup(0)  # would be an anomaly
    assert sized.marks(stamp)[:2] == (SUCCESS, None)
    assert sized.webhook.events() == []
    assert f"backup app/{stamp}: size check failed (the backup stands)" in caplog.text
    assert "catalog went away" in caplog.text and "T0K3N" not in caplog.text


def test_encrypting_a_tiny_service_is_not_a_stored_size_anomaly(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    url = f"sqlite:///{tmp_path}/catalog.db"
    plain = sized_fleet(tmp_path, webhook, url)
    for _ in range(3):
        plain.backup(50)
    encrypted = sized_fleet(tmp_path, webhook, url, backup_encryption_key=generate_key())
    encrypted.taken = plain.taken
    stamp = encrypted.backup(50)
    with session_scope(url) as session:
        sizes = {
            row.encryption is not None: row.size
            for row in session.scalars(select(Artifact).where(Artifact.service == "dump"))
        }
    assert sizes[True] > 3 * sizes[False]  # age's header: a 3x growth a naive check alerts
    assert webhook.events() == []
    assert encrypted.marks(stamp)[1] is None


def test_a_service_may_set_its_own_thresholds(tmp_path: Path, webhook: WebhookServer) -> None:
    url = f"sqlite:///{tmp_path}/catalog.db"
    sized = sized_fleet(tmp_path, webhook, url, extra="size_drop = 0.95\nsize_growth = 0")
    for _ in range(3):
        sized.backup(NORMAL)
    sized.backup(NORMAL // 10)  # 90 % below: within its 95 %
    sized.backup(NORMAL * 10)  # growth is off for it
    assert webhook.events() == []
    sized.backup(NORMAL // 100)  # 99 % below
    assert webhook.events() == ["backup.size_anomaly"]


def test_a_service_in_volumes_is_judged_on_their_sum_and_marked_once(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for name in ("a", "b"):
        (big / name).write_bytes(os.urandom(600 * 1024))
    fleet = make_fleet(
        tmp_path,
        extra_services=f'[namespaces.app.services.big]\nkind = "directory"\npath = "{big}"\n',
        alert_webhook_url=SecretStr(webhook.url),
        backup_volume_size=1024 * 1024,  # a volume per file or two
    )
    for hour in range(4):
        take_backup(fleet, moment=START + timedelta(hours=hour))
    assert webhook.events() == []
    for name in ("c", "d", "e", "f", "g", "h", "i", "j"):
        (big / name).write_bytes(os.urandom(600 * 1024))
    grown = take_backup(fleet, moment=START + timedelta(hours=5))
    assert webhook.events() == ["backup.size_anomaly"]
    text = webhook.received[0]["text"]
    assert "big: source 6.0 MiB, 5.0x the median 1.2 MiB of the last 4" in text
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_backup(session, namespace="app", timestamp=grown)
        assert row is not None
        marks = {a.volume: a.size_anomaly for a in row.artifacts if a.service == "big"}
    assert len(marks) > 2 and marks[1] is not None and marks[1] in text
    assert [marks[v] for v in sorted(marks) if v != 1] == [None] * (len(marks) - 1)


def test_a_tiny_service_s_swings_are_no_anomaly_at_the_default_floor(
    tmp_path: Path, webhook: WebhookServer, database_url: str
) -> None:
    default = Settings.model_fields["size_anomaly_min_bytes"].default
    sized = sized_fleet(tmp_path, webhook, database_url, size_anomaly_min_bytes=default)
    for _ in range(3):
        sized.backup(2 * 1024)  # a 2 KiB configuration dump
    grown = sized.backup(7 * 1024)  # 3.5x its median, 5 KiB more
    shrunk = sized.backup(512)  # 75 % below it
    assert webhook.events() == []
    assert sized.marks(grown)[1] is None and sized.marks(shrunk)[1] is None
    empty = sized.backup(0)  # 0 bytes: an anomaly whatever the floor
    assert webhook.events() == ["backup.size_anomaly"]
    assert sized.marks(empty)[1] == "dump: 0 bytes (the dump was empty)"
