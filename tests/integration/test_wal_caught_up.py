"""The recoverable window's `latest` (the streamer's caught_up_at) keeps up with a database
that commits all the time (issue 21's RPO). Found by bench/pitr_bench.py: compared with
the server's flushed position at the moment of shipping, the shipped end was almost never
"caught up" under a commit every 0.1 s (the received file's last non-zero byte is 7 bytes
short of a commit record's aligned end, and the receiver reports its position once a
second), so `latest`, the lag and an RPO stayed at the last quiet moment: 30 s and more.
"""

from datetime import UTC, datetime

import pytest

from tests.pitr_load import MarkerWriter
from tests.wal_fleet import WalFleet, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(120)
def test_caught_up_keeps_up_with_a_commit_every_tenth_of_a_second(wal_fleet: WalFleet) -> None:
    interval = 1.0  # WAL_SHIP_INTERVAL of the test fleet
    url = wal_fleet.server.admin_url
    with wal_fleet.streaming():
        wait_for(lambda: wal_fleet.stream_row(), timeout=30, what="the streamer's word")
        with MarkerWriter(url, every=0.1) as markers:
            wait_for(lambda: len(markers.committed) > 30, timeout=30, what="markers")
            behind = []
            for _ in range(20):
                row = wal_fleet.stream_row()
                assert row is not None and row.caught_up_at is not None
                behind.append((datetime.now(UTC) - _aware(row.caught_up_at)).total_seconds())
                markers.stop.wait(0.5)
        assert markers.error is None
    # Shipped every second: `latest` is never more than an interval, a poll and an upload
    # behind (without the fix it stayed where the load began).
    assert max(behind) < interval + 2.0, behind


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
