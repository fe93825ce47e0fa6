"""What the catalog says of each `pitr` service's WAL streaming: `backfleet wal status`, the
/metrics gauges and the wal.lag / wal.retained / wal.not_streaming / wal.gap alerts, from
rows a streamer would write."""

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.health_fleet import make_fleet
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import SUCCESS, Alert, Artifact, Backup, WalGap, WalSegment
from workers.catalog.wal import save_stream
from workers.cli import main
from workers.fleet import Fleet
from workers.monitoring import wal as wal_monitoring
from workers.monitoring.alerts import AlertEvent, alerter_for
from workers.monitoring.wal import NOT_STREAMING_GRACE, check_wal, wal_report
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


def stream(
    fleet: Fleet,
    *,
    behind: float,
    retained: int,
    shipped: int = 5 * MiB,
    holder: str | None = "host-a pid 42",
) -> None:
    now = utcnow()
    with session_scope(fleet.settings.database_url) as session:
        save_stream(
            session,
            namespace="app",
            service="pg",
            slot="backfleet_app_pg",
            holder=holder,
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


def metric_samples(fleet: Fleet) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    app = create_app(lambda: fleet)
    app.state.queue_depths = lambda _url: {}
    with TestClient(app) as client:
        text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


LABELS = (("namespace", "app"), ("service", "pg"))


def test_a_service_never_streamed_exports_not_streaming_and_the_thresholds(fleet: Fleet) -> None:
    """What the alert rules compare with exists before any streamer ran: streaming 0 (so
    BackfleetWalNotStreaming fires for it too), the window open, WAL_RPO and
    WAL_SLOT_MAX_RETAINED per service; no lag or retained figure is made up."""
    samples = metric_samples(fleet)
    assert samples[("backfleet_wal_streaming", LABELS)] == 0
    assert samples[("backfleet_wal_window_closed", LABELS)] == 0
    assert samples[("backfleet_wal_gaps", LABELS)] == 0
    assert samples[("backfleet_wal_rpo_seconds", LABELS)] == 30
    assert samples[("backfleet_wal_slot_max_retained_bytes", LABELS)] == 64 * MiB
    assert ("backfleet_wal_lag_seconds", LABELS) not in samples
    assert ("backfleet_wal_slot_retained_bytes", LABELS) not in samples
    # Only pitr services: the sqlite and directory services of the fleet have none.
    assert {labels for name, labels in samples if name.startswith("backfleet_wal_")} == {LABELS}


def add_backup(
    fleet: Fleet, *, finished: datetime, service: str = "pg", status: str = SUCCESS
) -> None:
    with session_scope(fleet.settings.database_url) as session:
        backup = Backup(
            namespace="app",
            timestamp=finished.strftime("%Y-%m-%dt%H-%M-%S"),
            status=status,
            services=[service],
            finished_at=finished,
        )
        session.add(backup)
        backup.artifacts.append(
            Artifact(
                service=service,
                kind="postgres",
                key=f"app/x/{service}.pgbase.zst",
                format="pgbase",
                compression="zstd",
                status=status,
            )
        )


def add_gap(fleet: Fleet, *, detected: datetime) -> None:
    with session_scope(fleet.settings.database_url) as session:
        session.add(
            WalGap(namespace="app", service="pg", reason="slot dropped", detected_at=detected)
        )


def test_the_window_is_closed_from_a_gap_until_a_backup_of_the_service_succeeds(
    fleet: Fleet,
) -> None:
    """backfleet_wal_window_closed is 1 exactly while wal.gap stays open: the same judgement
    (a successful backup holding the service, finished after the newest gap)."""
    now = utcnow()
    add_backup(fleet, finished=now - timedelta(hours=2))  # before the gap: it does not count
    add_gap(fleet, detected=now - timedelta(hours=1))
    alerter_for(fleet).open(
        "wal.gap:app:pg", AlertEvent(event="wal.gap", text="gap", namespace="app", service="pg")
    )
    stream(fleet, behind=1, retained=MiB)
    (item,) = check_wal(fleet)
    assert item.window_closed and item.gaps == 1
    assert metric_samples(fleet)[("backfleet_wal_window_closed", LABELS)] == 1
    assert "wal.gap" in open_events(fleet)
    # A failed backup, or another service's, after the gap does not reopen the window.
    add_backup(fleet, finished=now - timedelta(minutes=30), status="Failed")
    add_backup(fleet, finished=now - timedelta(minutes=20), service="db")
    (item,) = check_wal(fleet)
    assert item.window_closed and "wal.gap" in open_events(fleet)
    add_backup(fleet, finished=now - timedelta(minutes=10))
    (item,) = check_wal(fleet)
    assert not item.window_closed and "wal.gap" not in open_events(fleet)
    assert metric_samples(fleet)[("backfleet_wal_window_closed", LABELS)] == 0
    # A later gap closes it again, until the next backup.
    add_gap(fleet, detected=now - timedelta(minutes=5))
    assert metric_samples(fleet)[("backfleet_wal_window_closed", LABELS)] == 1


def test_not_streaming_opens_after_the_grace_and_resolves_when_a_streamer_streams(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = utcnow()
    monkeypatch.setattr(wal_monitoring, "STARTED_AT", start)
    # Never streamed: within the grace after the start nothing opens; past it, it does.
    check_wal(fleet, now=start + NOT_STREAMING_GRACE - timedelta(seconds=5))
    assert "wal.not_streaming" not in open_events(fleet)
    check_wal(fleet, now=start + NOT_STREAMING_GRACE + timedelta(seconds=5))
    assert open_events(fleet) == {"wal.not_streaming"}
    with session_scope(fleet.settings.database_url) as session:
        (text,) = [row.text for row in session.query(Alert).filter_by(resolved_at=None)]
    assert "has ever streamed" in text and "app" in text and "wal-pw-in-url-77" not in text
    # A streamer streams it: resolved.
    stream(fleet, behind=1, retained=MiB)
    check_wal(fleet)
    assert open_events(fleet) == set()
    # It stops (its last word: stopped): the grace counts from that word.
    stream(fleet, behind=1, retained=MiB, holder=None)
    check_wal(fleet)
    assert open_events(fleet) == set()
    later = utcnow() + NOT_STREAMING_GRACE + timedelta(seconds=5)
    check_wal(fleet, now=later)
    assert "wal.not_streaming" in open_events(fleet)
    # A process that starts again (its grace) leaves an open alert open: no flapping.
    monkeypatch.setattr(wal_monitoring, "STARTED_AT", later)
    check_wal(fleet, now=later + timedelta(seconds=1))
    assert "wal.not_streaming" in open_events(fleet)


def test_a_dead_streamer_is_not_streaming_after_the_grace(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal_monitoring, "STARTED_AT", utcnow() - timedelta(hours=1))
    stream(fleet, behind=1, retained=MiB)  # its holder still named: it died, it did not stop
    with session_scope(fleet.settings.database_url) as session:
        save_stream(session, namespace="app", service="pg", error="server closed the connection")
    check_wal(fleet, now=utcnow() + timedelta(seconds=60))  # stale word, within the grace
    assert "wal.not_streaming" not in open_events(fleet)
    check_wal(fleet, now=utcnow() + NOT_STREAMING_GRACE + timedelta(seconds=5))
    assert "wal.not_streaming" in open_events(fleet)
    with session_scope(fleet.settings.database_url) as session:
        texts = [row.text for row in session.query(Alert).filter_by(event="wal.not_streaming")]
    assert any("server closed the connection" in text for text in texts)


def test_alerts_of_a_service_no_longer_pitr_are_resolved(tmp_path: Path) -> None:
    """Nobody judges them any more; a wal.gap stays (only a backup resolves it)."""
    fleet = make_fleet(tmp_path, extra_services=PITR)
    alerter = alerter_for(fleet)
    for event in ("wal.lag", "wal.not_streaming", "wal.gap"):
        for service in ("pg", "gone"):
            alerter.open(
                f"{event}:app:{service}",
                AlertEvent(event=event, text=event, namespace="app", service=service),
            )
    check_wal(fleet)  # pg's are judged: no lag known (resolved), still not streaming
    with session_scope(fleet.settings.database_url) as session:
        still = {row.condition for row in session.query(Alert).filter_by(resolved_at=None)}
    assert still == {
        "wal.not_streaming:app:pg",
        "wal.gap:app:pg",
        "wal.gap:app:gone",
    }
    dispose_engines()
