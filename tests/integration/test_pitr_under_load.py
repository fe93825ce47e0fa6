"""Restore to a moment under a steady write load, with the streamer killed mid-segment
(issue 21, "Tests and measured targets"): a private cluster (1 MiB segments,
track_commit_timestamp on), a real Redis, the local store, two `backfleet wal` processes.

pgbench at a fixed rate and a marker row every 0.25 s run for ~30 s after a base backup;
the streamer holding the lock is killed with -9 mid-segment and the standby takes over.
Then the live database is restored to a random moment T after the takeover (so the
replay crosses what both streamers shipped): every marker committed at or before T is
there and none after it (judged by the commit records' own times), and the whole
database equals, table for table, a clone PostgreSQL recovered to T by itself (a
pg_basebackup taken before the load, replaying the source server's own pg_wal). The
shipped WAL has no gap and no segment twice.
"""

import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.test_pitr_to_time import started_on
from tests.pitr_load import (
    MarkerWriter,
    canonical_dump,
    commit_times,
    copy_wal,
    pgbench,
    recover_to,
    through,
)
from tests.pitr_moments import Moments, moments_fleet
from tests.plugins.wal import WAL_SEGMENT_SIZE, WAL_SETTINGS
from tests.servers import PrivatePostgres, RedisServer, postgres_bin_dir, started
from tests.wal_fleet import check_no_gap_no_duplicate, holder_pid, receivers_of, wait_for
from workers.operations.jobs import request_restore
from workers.operations.restore import run_restore
from workers.timestamps import format_moment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LOAD_SECONDS = 30
RATE = 100  # pgbench transactions per second
TTL = 3  # WAL_LOCK_TTL of the test fleet (tests/wal_fleet.py)
# The source keeps all its WAL (the clone replays it), and records commit times.
SETTINGS = {**WAL_SETTINGS, "track_commit_timestamp": "on", "wal_keep_size": "2GB"}


@pytest.fixture
def source() -> Iterator[PrivatePostgres]:
    server = started(PrivatePostgres(initdb_args=("--wal-segsize=1",), settings=SETTINGS))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = started(RedisServer())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def moments(
    tmp_path: Path,
    own_redis: RedisServer,
    source: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Moments]:
    with moments_fleet(tmp_path, own_redis, source, monkeypatch) as fleet:
        yield fleet


@pytest.fixture
def clone_root() -> Iterator[Path]:
    """A folder the `postgres` OS user can reach (the clone runs as it under root)."""
    root = Path(tempfile.mkdtemp(prefix="bf-clone-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def segment_offset(moments: Moments) -> float:
    """How far into its segment the server's WAL is, 0..1."""
    offset = moments.scalar("SELECT (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset")
    return int(offset) / WAL_SEGMENT_SIZE


def conninfo(server: PrivatePostgres, database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{server.port}/{database}"


@pytest.mark.timeout(200)
def test_restore_to_a_moment_under_load_across_a_takeover_matches_a_clone(
    moments: Moments, source: PrivatePostgres, clone_root: Path, tmp_path: Path
) -> None:
    wal = moments.wal
    bin_dir = postgres_bin_dir()
    url = conninfo(source, moments.database)
    seed = uuid.uuid4().int % 10**6
    chance = random.Random(seed)

    holder = wal.spawn("holder")
    wait_for(lambda: holder_pid(wal) == holder.pid, timeout=30, what="the holder streams")
    standby = wal.spawn("standby")
    initialised = subprocess.run(
        [str(bin_dir / "pgbench"), "-i", "-s", "2", "-q", url],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert initialised.returncode == 0, initialised.stderr
    moments.base_backup()
    # The clone's own base backup, before the load too (PostgreSQL's tool, not the fleet's).
    clone = clone_root / "data"
    basebackup = [str(bin_dir / "pg_basebackup"), "-D", str(clone), "-X", "stream"]
    basebackup += ["-d", conninfo(source, "postgres"), "--checkpoint=fast", "--no-sync"]
    taken = subprocess.run(basebackup, capture_output=True, timeout=120, check=False)
    assert taken.returncode == 0, taken.stderr

    load = pgbench(
        str(bin_dir / "pgbench"),
        url,
        *("-n", "-c", "2", "-j", "2", "-R", str(RATE), "-T", str(LOAD_SECONDS)),
        log=tmp_path / "pgbench.log",
    )
    try:
        with MarkerWriter(url, every=0.25) as markers:
            time.sleep(8)
            # Kill the holder mid-segment, with a partial of that segment already shipped.
            wait_for(
                lambda: (
                    0.15 < segment_offset(moments) < 0.85
                    and any(row.partial for row in wal.segments())
                ),
                timeout=20,
                what="the WAL mid-segment, a partial shipped",
                every=0.05,
            )
            assert holder_pid(wal) == holder.pid
            spool = f"pid-{holder.pid}"
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            killed = wal.scalar("SELECT clock_timestamp()")
            wait_for(lambda: not receivers_of(spool), timeout=10, what="its receiver gone")
            wait_for(lambda: holder_pid(wal) == standby.pid, timeout=TTL + 15, what="takeover")
            assert load.wait(LOAD_SECONDS + 60) == 0, (tmp_path / "pgbench.log").read_text()
        assert markers.error is None, markers.error
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()

    marks = commit_times(url)
    assert len(marks) >= LOAD_SECONDS * 3, len(marks)
    window = moments.wait_shipped(marks[-1][1])
    assert window.earliest is not None and window.earliest < marks[0][1]
    # A random moment after the takeover: the replay crosses what both streamers shipped.
    low, high = killed + timedelta(seconds=1), marks[-1][1] - timedelta(seconds=1)
    target = low + (high - low) * chance.random()
    assert window.contains(target)
    kept = through(marks, target)
    assert 0 < len(kept) < len(marks), f"seed {seed}: {format_moment(target)}"
    wal_copy = clone_root / "wal"
    assert copy_wal(source.directory / "data" / "pg_wal", wal_copy) >= 3

    fleet = wal.fleet()
    row = request_restore(
        fleet,
        namespace=moments.namespace,
        timestamp=None,
        target_time=target,
        requested_by="test",
        enqueue=lambda *_: uuid.uuid4().hex,
    )
    assert run_restore(fleet, restore_id=row.id) == "Success"
    assert moments.markers() == kept, f"seed {seed}: target {format_moment(target)}"

    # The clone: PostgreSQL's own recovery to the same moment, from its own base backup.
    recover_to(clone, wal=wal_copy, moment=target)
    pg_dump = str(bin_dir / "pg_dump")
    restored = canonical_dump(pg_dump, url)
    with started_on(clone) as sockets:
        cloned = canonical_dump(
            pg_dump, f"host={sockets} port=5432 user=postgres dbname={moments.database}"
        )
    assert "pgbench_accounts" in cloned and "COPY public.markers" in cloned
    assert restored == cloned, f"seed {seed}: target {format_moment(target)}"

    # No gap, no segment twice: close the last segment, let the standby ship it, stop it.
    last = wal.switch()
    wait_for(
        lambda: any(row.segment == last for row in wal.segments(partial=False)),
        timeout=30,
        what=f"segment {last} shipped",
    )
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(30) == 0
    compared = check_no_gap_no_duplicate(wal, through=last, segment_size=WAL_SEGMENT_SIZE)
    assert compared >= 3
    assert "Traceback" not in wal.log_of("standby")
