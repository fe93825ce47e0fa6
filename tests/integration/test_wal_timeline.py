"""A failover: the streamed primary's standby is promoted (a new timeline) and the service
pointed at it, with Backfleet's slot made on the standby beforehand (what failover slots
do). The stream goes on from where it was, on the old timeline up to the switch, then on
the new one: the history file shipped, no gap, the bytes the new primary holds."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.wal import WAL_SEGMENT_SIZE, WAL_SETTINGS
from tests.servers import PrivatePostgres, started
from tests.wal_fleet import make_fleet, wait_for
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.models import WalSegment
from workers.catalog.wal import holes
from workers.fleet import reset_fleet
from workers.pitr.lsn import parse_lsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def clusters() -> Iterator[tuple[PrivatePostgres, PrivatePostgres]]:
    primary = started(PrivatePostgres(initdb_args=("--wal-segsize=1",), settings=WAL_SETTINGS))
    try:
        standby = started(PrivatePostgres(settings=WAL_SETTINGS, standby_of=primary))
        try:
            yield primary, standby
        finally:
            standby.close()
    finally:
        primary.close()


@pytest.mark.timeout(240)
def test_a_promoted_standby_s_new_timeline_streams_on_without_a_gap(
    tmp_path: Path,
    redis_server: Any,
    clusters: tuple[PrivatePostgres, PrivatePostgres],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    primary, standby = clusters
    fleet = make_fleet(tmp_path, redis_server, primary, monkeypatch)
    try:
        with fleet.streaming():
            wait_for(fleet.slot_exists, timeout=20, what="the slot")
            for _ in range(3):
                fleet.write_wal(500)
                fleet.switch()
            wait_for(lambda: len(fleet.segments(partial=False)) >= 3, timeout=30, what="shipped")
        fleet.server = standby
        fleet.execute("SELECT pg_create_physical_replication_slot(%s, true)", (fleet.slot,))
        fleet.server = primary
        fleet.write_wal(500)  # WAL the streamer never saw on the primary
        fleet.switch()
        fleet.write_wal(300)
        end = parse_lsn(fleet.scalar("SELECT pg_current_wal_flush_lsn()::text"))
        fleet.server = standby
        wait_for(
            lambda: parse_lsn(fleet.scalar("SELECT pg_last_wal_replay_lsn()::text")) >= end,
            timeout=30,
            what="the standby caught up",
        )
        primary.stop()
        fleet.execute("SELECT pg_promote(true, 30)")
        assert fleet.scalar("SELECT pg_walfile_name(pg_current_wal_lsn())").startswith("00000002")
        services = Path(fleet.env["BACKFLEET_CONFIG"])
        services.write_text(services.read_text().replace(primary.admin_url, standby.admin_url))
        reset_fleet()
        with fleet.streaming():
            wait_for(
                lambda: any(r.segment == "00000002.history" for r in history_rows(fleet)),
                timeout=30,
                what="the history file shipped",
            )
            fleet.write_wal(500)
            last = fleet.switch()
            wait_for(
                lambda: any(r.segment == last for r in fleet.segments(partial=False)),
                timeout=30,
                what="a segment of the new timeline shipped",
            )
        assert not fleet.gaps(), [gap.reason for gap in fleet.gaps()]
        rows = fleet.segments()
        assert {row.timeline for row in rows} == {1, 2}
        with session_scope(fleet.catalog) as session:
            system = rows[0].system_identifier
            assert (
                holes(session, namespace=fleet.namespace, service="db", system_identifier=system)
                == []
            )
        # The old timeline's last segment ends at the switch: a partial, shipped as such; the
        # new timeline's copy of that segment follows it.
        (switch,) = [row for row in rows if row.timeline == 1 and row.partial]
        first_new = min((row for row in rows if row.timeline == 2), key=lambda row: row.start_lsn)
        assert switch.segment[8:] == first_new.segment[8:] and switch.end_lsn > switch.start_lsn
        (history,) = history_rows(fleet)
        on_server = fleet.scalar("SELECT pg_read_binary_file('pg_wal/00000002.history')")
        assert fleet.plain(history) == bytes(on_server)
        compared = 0
        for row in rows:
            if row.timeline == 2 and not row.partial:
                server = fleet.server_segment(row.segment)
                if server is not None:
                    assert fleet.plain(row) == server and len(server) == WAL_SEGMENT_SIZE
                    compared += 1
        assert compared >= 1
    finally:
        fleet.close()
        dispose_engines()


def history_rows(fleet: Any) -> list[WalSegment]:
    with session_scope(fleet.catalog) as session:
        rows = session.query(WalSegment).filter_by(namespace=fleet.namespace, kind="history").all()
        session.expunge_all()
        return rows
