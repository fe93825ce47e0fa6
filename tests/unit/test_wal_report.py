"""What the catalog says of each `pitr` service's WAL streaming: `backfleet wal status`, the
/metrics gauges and the wal.lag / wal.retained alerts, from rows a streamer would write."""

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.health_fleet import make_fleet
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert, WalGap, WalSegment
from workers.catalog.wal import save_stream
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring.wal import check_wal, wal_report
from workers.timestamps import utcnow

PITR = """
[namespaces.app.services.pg]
kind = "postgres"
url = "postgresql://walrole:wal-pw-in-url-77@db.example/app"
pitr = true
"""
MiB = 1024 * 1024


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path, extra_services=PITR, wal_rpo="30s", wal_slot_max_retained=64 * MiB)
    yield made
    dispose_engines()


def stream(fleet: Fleet, *, behind: float, retained: int, shipped: int = 5 * MiB) -> None:
    now = utcnow()
    with session_scope(fleet.settings.database_url) as session:
        save_stream(
            session,
            namespace="app",
            service="pg",
            slot="backfleet_app_pg",
            holder="host-a pid 42",
            system_identifier="7300000000000000001",
            timeline=1,
            server_lsn=shipped + 4096,
            shipped_lsn=shipped,
            shipped_at=now - timedelta(seconds=1),
            caught_up_at=now - timedelta(seconds=behind),
            retained_bytes=retained,
            wal_status="reserved",
        )
        if session.query(WalSegment).count():
            return
        session.add(
            WalSegment(
                namespace="app",
                service="pg",
                system_identifier="7300000000000000001",
                timeline=1,
                segment="000000010000000000000005",
                start_lsn=5 * MiB,
                end_lsn=shipped,
                partial=True,
                key="app/wal/pg/000000010000000000000005.partial.zst",
                size=100,
                source_size=16 * MiB,
                sha256="0" * 64,
                shipped_at=now,
            )
        )


def open_events(fleet: Fleet) -> set[str]:
    with session_scope(fleet.settings.database_url) as session:
        return {row.event for row in session.query(Alert).filter_by(resolved_at=None)}


def test_lag_and_retained_alerts_open_and_resolve(fleet: Fleet) -> None:
    stream(fleet, behind=5, retained=10 * MiB)
    (item,) = check_wal(fleet)
    assert item.streaming and item.lag_bytes == 4096 and item.lag_seconds is not None
    assert item.last_segment == "000000010000000000000005.partial"
    assert open_events(fleet) == set()
    stream(fleet, behind=120, retained=100 * MiB)
    check_wal(fleet)
    assert open_events(fleet) == {"wal.lag", "wal.retained"}
    with session_scope(fleet.settings.database_url) as session:
        texts = [row.text for row in session.query(Alert)]
    assert any("WAL_RPO" in text for text in texts)
    assert any("WAL_SLOT_MAX_RETAINED" in text and "drop-slot" in text for text in texts)
    assert not any("wal-pw-in-url-77" in text for text in texts)
    stream(fleet, behind=1, retained=MiB)
    check_wal(fleet)
    assert open_events(fleet) == set()


def test_a_service_never_streamed_is_listed_without_numbers(fleet: Fleet) -> None:
    (item,) = wal_report(fleet)
    assert (item.namespace, item.service, item.slot, item.streaming) == ("app", "pg", None, False)
    assert item.lag_seconds is None and item.gaps == 0


def test_status_and_metrics_say_the_same(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    stream(fleet, behind=2, retained=3 * MiB)
    with session_scope(fleet.settings.database_url) as session:
        session.add(WalGap(namespace="app", service="pg", reason="slot dropped", start_lsn=1))
    monkeypatch.setattr("workers.fleet.current_fleet", lambda: fleet)
    done = CliRunner().invoke(main, ["wal", "status", "--json"])
    assert done.exit_code == 0, done.output
    (item,) = json.loads(done.output)
    assert item["slot"] == "backfleet_app_pg" and item["retainedBytes"] == 3 * MiB
    assert item["shippedLsn"] == "0/500000" and item["gaps"] == 1
    assert item["lastGap"] == "slot dropped"
    table = CliRunner().invoke(main, ["wal", "status"])
    assert "000000010000000000000005.partial" in table.output and "0/500000" in table.output
    assert "host-a pid 42" in table.output and "wal-pw-in-url-77" not in table.output

    app = create_app(lambda: fleet)
    app.state.queue_depths = lambda _url: {}
    with TestClient(app) as client:
        text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = (("namespace", "app"), ("service", "pg"))
    assert samples[("backfleet_wal_streaming", labels)] == 1
    assert samples[("backfleet_wal_lag_bytes", labels)] == 4096
    assert 1 <= samples[("backfleet_wal_lag_seconds", labels)] < 30
    assert samples[("backfleet_wal_last_shipped_lsn", labels)] == 5 * MiB
    assert samples[("backfleet_wal_slot_retained_bytes", labels)] == 3 * MiB
    assert samples[("backfleet_wal_gaps", labels)] == 1
    assert "wal-pw-in-url-77" not in text and "db.example" not in text
