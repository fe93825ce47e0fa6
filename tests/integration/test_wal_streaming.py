"""WAL streaming of a `pitr` service against a real PostgreSQL cluster (1 MiB segments), a real
Redis and a local store: what is shipped is what the server wrote, the growing segment
ships within the interval, the slot keeps what is not shipped yet and lets go of the rest;
/metrics and wal.not_streaming follow the streamer."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from tests.plugins.wal import WAL_SEGMENT_SIZE
from tests.servers import PrivatePostgres
from tests.wal_fleet import WalFleet, make_fleet, wait_for
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import Alert
from workers.monitoring import wal as wal_monitoring
from workers.pitr.lsn import parse_lsn, parse_segment_name
from workers.timestamps import utcnow
from workers.transfer.crypto import generate_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(120)
def test_segments_ship_as_the_server_wrote_them_and_the_slot_lets_go_after(
    wal_fleet: WalFleet,
) -> None:
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        names = []
        for _ in range(3):
            wal_fleet.write_wal()
            names.append(wal_fleet.switch())
        wanted = set(names)
        wait_for(
            lambda: wanted <= {row.segment for row in wal_fleet.segments(partial=False)},
            timeout=30,
            what="the switched segments shipped",
        )
        for row in wal_fleet.segments(partial=False):
            if row.segment not in wanted:
                continue
            plain = wal_fleet.plain(row)  # its SHA-256 and size checked too
            assert len(plain) == WAL_SEGMENT_SIZE == row.source_size
            assert plain == wal_fleet.server_segment(row.segment), row.segment
            timeline, start = parse_segment_name(row.segment, WAL_SEGMENT_SIZE)
            assert (row.timeline, row.start_lsn, row.end_lsn) == (
                timeline,
                start,
                start + WAL_SEGMENT_SIZE,
            )
            assert row.key == f"{wal_fleet.namespace}/wal/db/{row.segment}.zst"
        # Shipped and recorded: the slot no longer holds them.
        newest = max(wal_fleet.segments(partial=False), key=lambda row: row.end_lsn)
        restart = wal_fleet.scalar(
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (wal_fleet.slot,),
        )
        assert parse_lsn(restart) >= newest.end_lsn
    # No sequence hole, and the spool folder holds nothing shipped.
    starts = [row.start_lsn for row in wal_fleet.segments()]
    assert starts == list(
        range(starts[0], starts[0] + WAL_SEGMENT_SIZE * len(starts), WAL_SEGMENT_SIZE)
    )
    assert wal_fleet.stream_row() is not None
    assert wal_fleet.stream_row().holder is None  # stopped: it says so


@pytest.mark.timeout(120)
def test_the_growing_segment_ships_within_the_interval_and_says_how_far(
    wal_fleet: WalFleet,
) -> None:
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        wal_fleet.switch()
        wal_fleet.write_wal(200)
        wal_fleet.execute("CREATE TABLE marker (x int)")
        target = parse_lsn(wal_fleet.scalar("SELECT pg_current_wal_flush_lsn()::text"))
        segment = wal_fleet.scalar("SELECT pg_walfile_name(pg_current_wal_flush_lsn())")

        def partial_shipped() -> Any:
            rows = [r for r in wal_fleet.segments(partial=True) if r.segment == segment]
            return rows and rows[0].end_lsn >= target and rows[0]

        row = wait_for(partial_shipped, timeout=1 + 5, what="the partial shipped with the marker")
        assert row.key.endswith(f"{segment}.partial.zst")
        plain = wal_fleet.plain(row)
        assert len(plain) == WAL_SEGMENT_SIZE
        server = wal_fleet.server_segment(segment)
        assert server is not None
        valid = target - row.start_lsn
        assert plain[:valid] == server[:valid]  # what was written up to the marker
        # The streamer's word: caught up, no lag.
        stream = wait_for(
            lambda: (
                (s := wal_fleet.stream_row()) and s.shipped_lsn and s.shipped_lsn >= target and s
            ),
            timeout=10,
            what="the stream's word",
        )
        assert stream.holder and stream.slot == wal_fleet.slot
        assert stream.retained_bytes is not None and stream.retained_bytes < 4 * WAL_SEGMENT_SIZE


@pytest.mark.timeout(120)
def test_encrypted_segments_decrypt_to_the_server_s_bytes(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = generate_key()
    fleet = make_fleet(
        tmp_path, redis_server, wal_postgres, monkeypatch, {"BACKUP_ENCRYPTION_KEY": key}
    )
    from pyrage import x25519

    fleet.identity = x25519.Identity.from_str(key)
    try:
        with fleet.streaming():
            wait_for(fleet.slot_exists, timeout=20, what="the slot")
            fleet.write_wal()
            name = fleet.switch()
            row = wait_for(
                lambda: next((r for r in fleet.segments(partial=False) if r.segment == name), None),
                timeout=30,
                what="the segment shipped",
            )
            assert row.key.endswith(".zst.enc") and row.encryption is not None
            assert fleet.plain(row) == fleet.server_segment(name)
    finally:
        fleet.close()
        dispose_engines()


def wal_samples(fleet: WalFleet) -> dict[str, float]:
    """The service's backfleet_wal_* samples on /metrics, by name."""

    app = create_app(fleet.fleet)
    app.state.queue_depths = lambda _url: {}
    with TestClient(app) as client:
        text = client.get("/metrics").text
    labels = {"namespace": fleet.namespace, "service": fleet.service}
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("backfleet_wal_") and sample.labels == labels
    }


@pytest.mark.timeout(120)
def test_the_metrics_and_not_streaming_follow_a_real_streamer(
    wal_fleet: WalFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, during and after `backfleet wal`: the gauges the alert rules read, and
    wal.not_streaming opened once it stopped (past the grace) and resolved by a streamer."""

    def not_streaming_open() -> bool:
        with session_scope(wal_fleet.catalog) as session:
            rows = session.query(Alert).filter_by(event="wal.not_streaming", resolved_at=None)
            return rows.count() > 0

    before = wal_samples(wal_fleet)  # configured, never streamed: the series exist
    assert before["backfleet_wal_streaming"] == 0 and before["backfleet_wal_window_closed"] == 0
    assert before["backfleet_wal_rpo_seconds"] == 60
    assert before["backfleet_wal_slot_max_retained_bytes"] == 1024 * 1024 * 1024
    monkeypatch.setattr(wal_monitoring, "STARTED_AT", utcnow() - timedelta(hours=1))
    wal_monitoring.check_wal(wal_fleet.fleet())
    assert not_streaming_open()
    with wal_fleet.streaming():
        wait_for(wal_fleet.slot_exists, timeout=20, what="the slot")
        wal_fleet.write_wal()
        wal_fleet.switch()
        during = wait_for(
            lambda: (
                (s := wal_samples(wal_fleet)).get("backfleet_wal_streaming") == 1
                and "backfleet_wal_last_shipped_timestamp_seconds" in s
                and s
            ),
            timeout=30,
            what="the streamer's word on /metrics",
        )
        assert 0 <= during["backfleet_wal_lag_seconds"] < 60
        assert during["backfleet_wal_slot_retained_bytes"] >= 0
        assert during["backfleet_wal_window_closed"] == 0
        wal_monitoring.check_wal(wal_fleet.fleet())
        assert not not_streaming_open()
    after = wal_samples(wal_fleet)  # stopped: it said so
    assert after["backfleet_wal_streaming"] == 0
    wal_monitoring.check_wal(wal_fleet.fleet())
    assert not not_streaming_open()  # within the grace after its last word
    wal_monitoring.check_wal(wal_fleet.fleet(), now=utcnow() + wal_monitoring.NOT_STREAMING_GRACE)
    assert not_streaming_open()
