"""The RPO of a sudden stop of the database host (issue 21: within 10 s, over several runs).

One run, on a fresh source cluster of its own (namespace `rpo<N>`):
1. `backfleet wal` streams the service (Backfleet's default settings: WAL_SHIP_INTERVAL
   5 s), and a base backup is taken (in this process, `run_backup`);
2. a marker row is committed every 0.1 s (`markers`: id, clock_timestamp()) for a
   random 30-40 s (several shipping cycles under load), so the crash falls anywhere in
   the shipping cycle;
3. the host "dies": SIGKILL to the postmaster and all its processes at once;
4. the streamer gives up (its pg_receivewal ended, it recorded the error), and is stopped;
5. the service is restored to the window's `latest` (what `backfleet restore --to-time`
   of that moment does: `request_restore` + `run_restore` in this process) into a fresh
   database on another cluster (the services file now points there, as an operator
   would after losing the host).

RPO = the last marker whose commit the client saw before the crash minus the newest
marker restored. Both are the rows' clock_timestamp(), taken inside each one-statement
transaction just before its commit (< 1 ms apart here), so the difference is that of
their commit times; the source's own commit timestamps died with it.
"""

import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.pitr_fleet import PitrBenchFleet, crash
from tests.pitr_load import MARKERS, MarkerWriter
from tests.servers import PrivatePostgres

MARKER_EVERY = 0.1
MARKER_SECONDS = 30  # and up to 10 s more: several shipping cycles under load
SERVICE = "db"


def log(message: str) -> None:
    print(f"[pitr-bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(check: Any, *, timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(every)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def stream_row(namespace: str) -> Any:
    from workers.catalog.db import session_scope
    from workers.catalog.models import WalStream
    from workers.fleet import current_fleet

    with session_scope(current_fleet().settings.database_url) as session:
        row = session.get(WalStream, (namespace, SERVICE))
        if row is not None:
            session.expunge(row)
        return row


def window_of(namespace: str) -> Any:
    from workers.catalog.db import session_scope
    from workers.fleet import current_fleet
    from workers.pitr.window import load_window

    with session_scope(current_fleet().settings.database_url) as session:
        return load_window(session, namespace=namespace, service=SERVICE)


def take_base_backup(namespace: str) -> str:
    """A backup of the namespace in this process (its only service: a base backup)."""
    from workers.catalog import queries
    from workers.catalog.db import session_scope
    from workers.fleet import current_fleet
    from workers.operations.backup import run_backup

    fleet = current_fleet()
    with session_scope(fleet.settings.database_url) as session:
        backup = queries.create_backup(
            session, namespace=namespace, services=[SERVICE], only_config=False, trigger="bench"
        )
        timestamp = backup.timestamp
    outcome = run_backup(fleet, namespace=namespace, timestamp=timestamp)
    if outcome.status != "Success":
        raise RuntimeError(f"the base backup failed: {outcome.error}")
    return timestamp


def restore_to(namespace: str, moment: datetime) -> float:
    """The service restored to `moment` (the restore row's queue-to-Success seconds)."""
    from workers.fleet import current_fleet
    from workers.operations.jobs import request_restore
    from workers.operations.restore import run_restore

    fleet = current_fleet()
    started = time.monotonic()
    row = request_restore(
        fleet,
        namespace=namespace,
        timestamp=None,
        target_time=moment,
        requested_by="bench",
        enqueue=lambda *_: uuid.uuid4().hex,
    )
    status = run_restore(fleet, restore_id=row.id)
    if status != "Success":
        raise RuntimeError(f"the restore to {moment} ended {status}")
    return time.monotonic() - started


def newest_marker(url: str) -> tuple[int, datetime] | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id, at FROM markers ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), row[1])


def rpo_run(
    fleet: PitrBenchFleet, index: int, target: PrivatePostgres, chance: random.Random
) -> dict[str, Any]:
    namespace = f"rpo{index}"
    source = fleet.cluster()
    url = fleet.database(source, "app")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(MARKERS)  # type: ignore[arg-type]
    fleet.configure(namespace, url)
    streamer = fleet.spawn(f"wal-{namespace}", "wal")
    wait_for(
        lambda: (row := stream_row(namespace)) is not None and row.holder,
        timeout=120,
        what="the streamer streams",
    )
    take_base_backup(namespace)
    duration = MARKER_SECONDS + 10 * chance.random()
    with MarkerWriter(url, every=MARKER_EVERY, expect_death=True) as markers:
        time.sleep(duration)
        crashed, crashed_at = time.monotonic(), datetime.now(UTC)
        crash(source)
        markers.stop.set()
    if markers.error is not None or markers.last is None:
        raise RuntimeError(f"the markers failed: {markers.error}")
    last_id, last_at = markers.last
    row = wait_for(
        lambda: (
            (found := stream_row(namespace)) is not None
            and found.error
            and _aware(found.updated_at) >= crashed_at
            and found
        ),
        timeout=120,
        what="the streamer saying its stream failed",
    )
    gave_up = time.monotonic() - crashed
    fleet.stop(streamer)
    window = window_of(namespace)
    if window.latest is None:
        raise RuntimeError(f"no window after the crash: {window.reason}")
    restored_url = fleet.database(target, namespace)
    fleet.configure(namespace, restored_url)
    restore_s = restore_to(namespace, window.latest)
    newest = newest_marker(restored_url)
    fleet.drop_cluster(source)
    restored_id, restored_at = newest if newest is not None else (0, None)
    rpo = (last_at - restored_at).total_seconds() if restored_at is not None else None
    result = {
        "run": index,
        "markers_seconds": round(duration, 1),
        "last_written": {"id": last_id, "at": last_at.isoformat()},
        "newest_restored": {
            "id": restored_id,
            "at": restored_at.isoformat() if restored_at else None,
        },
        "markers_lost": last_id - restored_id,
        "rpo_s": None if rpo is None else round(max(0.0, rpo), 3),
        "window_latest_behind_s": round((last_at - window.latest).total_seconds(), 3),
        "newest_shipped_behind_s": (
            round((last_at - row.shipped_at).total_seconds(), 3) if row.shipped_at else None
        ),
        "streamer_gave_up_after_s": round(gave_up, 1),
        "streamer_said": str(row.error)[:160],
        "restore_s": round(restore_s, 1),
    }
    log(
        f"RPO run {index}: {result['rpo_s']} s ({result['markers_lost']} markers lost; the "
        f"window's latest {result['window_latest_behind_s']} s before the last marker)"
    )
    return result


def _aware(moment: datetime) -> datetime:
    """The catalog's time (SQLite gives it back naive: UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run_rpo(fleet: PitrBenchFleet, runs: int, seed: int) -> dict[str, Any]:
    chance = random.Random(seed)
    target = fleet.cluster()  # the other cluster the service is restored into
    results = [rpo_run(fleet, index, target, chance) for index in range(1, runs + 1)]
    return {"runs": results, "marker_every_s": MARKER_EVERY, "seed": seed}
