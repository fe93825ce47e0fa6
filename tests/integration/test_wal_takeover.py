"""One streamer per `pitr` service across the fleet, with a standby: `backfleet wal` processes
on a real Redis and PostgreSQL, killed with -9 mid-segment, and Redis restarted under them.
Whatever happens, the shipped sequence has no gap and no duplicate, checked against the
server's own WAL."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.wal import WAL_SEGMENT_SIZE
from tests.servers import PrivatePostgres, RedisServer, started
from tests.wal_fleet import (
    WalFleet,
    Writer,
    check_no_gap_no_duplicate,
    holder_pid,
    make_fleet,
    receivers_of,
    wait_for,
)
from workers.catalog.db import dispose_engines

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TTL = 3  # WAL_LOCK_TTL of these fleets


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = started(RedisServer())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def wal_fleet(
    tmp_path: Path,
    own_redis: RedisServer,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[WalFleet]:
    fleet = make_fleet(tmp_path, own_redis, wal_postgres, monkeypatch)
    try:
        yield fleet
    finally:
        fleet.close()
        dispose_engines()


def streamers_connected(fleet: WalFleet) -> int:
    return int(
        fleet.scalar(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s", (fleet.slot,)
        )
    )


def finish(fleet: WalFleet, survivor: Any) -> None:
    """Close the last segment, let the survivor ship it, stop it as SIGTERM does; then check."""
    last = fleet.switch()
    wait_for(
        lambda: any(row.segment == last for row in fleet.segments(partial=False)),
        timeout=30,
        what=f"segment {last} shipped",
    )
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(30) == 0
    compared = check_no_gap_no_duplicate(fleet, through=last, segment_size=WAL_SEGMENT_SIZE)
    assert compared >= 3  # the server still had them: the bytes are the same


@pytest.mark.timeout(180)
def test_a_standby_takes_over_a_streamer_killed_mid_segment_without_gap_or_duplicate(
    wal_fleet: WalFleet,
) -> None:
    first = wal_fleet.spawn("first")
    wait_for(lambda: holder_pid(wal_fleet) == first.pid, timeout=30, what="the first streams")
    second = wal_fleet.spawn("second")
    with Writer(wal_fleet) as writer:
        wait_for(
            lambda: (
                len(wal_fleet.segments(partial=False)) >= 2
                and any(row.partial for row in wal_fleet.segments())
            ),
            timeout=30,
            what="segments and a partial shipped",
        )
        assert holder_pid(wal_fleet) == first.pid  # the second stands by
        spool = f"pid-{first.pid}"
        assert receivers_of(spool), "the first's pg_receivewal"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed = time.monotonic()
        wait_for(lambda: not receivers_of(spool), timeout=10, what="its receiver gone with it")
        wait_for(lambda: holder_pid(wal_fleet) == second.pid, timeout=TTL + 15, what="takeover")
        took = time.monotonic() - killed
        assert took <= TTL + 1 + 2 * 1 + 3, f"took {took:.1f} s"  # TTL, a poll, two words
        shipped = len(wal_fleet.segments(partial=False))
        wait_for(
            lambda: len(wal_fleet.segments(partial=False)) >= shipped + 2,
            timeout=30,
            what="the second ships on",
        )
        assert writer.error is None
    assert streamers_connected(wal_fleet) == 1
    finish(wal_fleet, second)
    assert "Traceback" not in wal_fleet.log_of("second")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("down", [0.0, TTL + 2.0], ids=["restart", "outage-past-the-ttl"])
def test_a_redis_restart_loses_nothing_and_ships_nothing_twice(
    wal_fleet: WalFleet, own_redis: RedisServer, down: float
) -> None:
    """A restart (the holder takes its lock back), and an outage longer than the TTL (the
    holder cannot vouch for its lock: it stops, and both race for the lock again)."""
    first = wal_fleet.spawn("first")
    second = wal_fleet.spawn("second")
    wait_for(
        lambda: holder_pid(wal_fleet) in (first.pid, second.pid), timeout=30, what="one streams"
    )
    with Writer(wal_fleet) as writer:
        wait_for(
            lambda: len(wal_fleet.segments(partial=False)) >= 2,
            timeout=30,
            what="segments shipped",
        )
        own_redis.stop()  # no persistence: every lock is gone
        time.sleep(down)
        own_redis.start()
        shipped = len(wal_fleet.segments(partial=False))
        wait_for(
            lambda: len(wal_fleet.segments(partial=False)) >= shipped + 3,
            timeout=40,
            what="shipping goes on after the restart",
        )
        assert writer.error is None
    # Exactly one streams (whichever won the lock back), and it says so.
    wait_for(lambda: streamers_connected(wal_fleet) == 1, timeout=TTL + 10, what="one receiver")
    holder = wait_for(lambda: holder_pid(wal_fleet), timeout=10, what="a holder")
    survivor, other = (first, second) if holder == first.pid else (second, first)
    other.send_signal(signal.SIGTERM)
    assert other.wait(30) == 0
    finish(wal_fleet, survivor)
    assert os.environ["BROKER_URL"] == own_redis.url
