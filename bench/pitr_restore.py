"""Restore time of a ~1 GB base backup plus ~0.5 GB of WAL, to a moment, into the live
target, beside pg_restore of a dump of the same data (issue 21: within 2x).

1. A source cluster (16 MiB segments) holding ~1 GB: by default bench/datagen.py's
   `backfleet_bench` (customers, orders, documents with random bytes; what the main
   bench's database rows use: ~0.98 GB, compressing about 2:1), or with `--data pgbench`
   `pgbench -i -I dtGvp -s SCALE` (~1.05 GB at scale 70, but its blank padding
   compresses ~20:1, which hides the cost of moving the bytes);
2. `backfleet wal` streams it; a Celery worker (backup and restore queues) takes the
   base backup: `backfleet backup --wait`;
3. WAL: `UPDATE <table> SET <counter> = <counter> + 1` over 100,000 rows a transaction
   (orders.amount, or pgbench_accounts.abalance), walking the table, until WAL_BYTES
   were written; the moment T is taken from the server's clock between two such
   transactions once WAL_BYTES is reached, and one more follows it (so a commit after T
   is in the WAL, as in a live database); the streamer ships it all, then is stopped
   (the timed restores run without it);
4. timed: `backfleet restore --to-time T --wait` through the worker, into the live
   database; checked: the counter's sum is exactly the updates committed before T;
5. timed: `pg_dump -Fc` of the restored database (the same data, at T), then `pg_restore
   -d` of it into an empty database (one job, no --single-transaction, like the main
   bench); checked the same way.

The ratio the issue's 2x judges is Backfleet's wall time over pg_restore's alone (the
stricter reading); over pg_dump + pg_restore is shown too.
"""

import json
import os
import re
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psutil  # type: ignore[import-untyped]
import psycopg

from bench.pitr_fleet import PitrBenchFleet, programs
from bench.pitr_rpo import log, wait_for, window_of

NAMESPACE = "pitrb"
BATCH = 100_000
MiB = 1024 * 1024


@dataclass(frozen=True)
class DataSet:
    """Where the WAL is written: `counter` of `table` goes up by 1, by `key` ranges."""

    kind: str
    database: str
    table: str
    key: str
    counter: str

    def sum(self, url: str) -> Decimal:
        return Decimal(str(_scalar(url, f"SELECT sum({self.counter})::text FROM {self.table}")))


DATA_SETS = {
    "generated": DataSet("generated", "backfleet_bench", "orders", "id", "amount"),
    "pgbench": DataSet("pgbench", "bench", "pgbench_accounts", "aid", "abalance"),
}


def generate(fleet: PitrBenchFleet, source: Any, data: DataSet, scale: float) -> float:
    """The data set in the source cluster; seconds it took."""
    from bench.datagen import ensure_database

    started = time.monotonic()
    if data.kind == "generated":
        ensure_database(source.admin_url, scale=scale, log=log)
    else:
        url = fleet.database(source, data.database)
        pgbench = [programs()["pgbench"], "-i", "-I", "dtGvp", "-s", str(int(scale)), "-q"]
        timed([*pgbench, url], timeout=1800)
    return time.monotonic() - started


def _scalar(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


def timed(argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-800:]}")
    return time.monotonic() - started


def write_wal(url: str, data: DataSet, rows: int, wal_bytes: int) -> dict[str, Any]:
    """Batches of updates until `wal_bytes` of WAL; T between two batches; one batch after."""
    started_lsn = _scalar(url, "SELECT pg_current_wal_lsn()::text")
    updated = 0
    started = time.monotonic()
    first = 1
    moment: datetime | None = None
    expected = at_moment = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            last = min(first + BATCH - 1, rows)
            conn.execute(
                f"UPDATE {data.table} SET {data.counter} = {data.counter} + 1 "  # type: ignore[arg-type]
                f"WHERE {data.key} BETWEEN %s AND %s",
                (first, last),
            )
            updated += last - first + 1
            first = 1 if last == rows else last + 1
            if moment is not None:
                break  # the batch after T
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (started_lsn,)
            ).fetchone()
            assert row is not None
            if int(row[0]) >= wal_bytes:
                time.sleep(0.2)
                at = conn.execute("SELECT clock_timestamp()").fetchone()
                assert at is not None
                moment, expected, at_moment = at[0], updated, int(row[0])
                time.sleep(0.2)
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (started_lsn,)
        ).fetchone()
        assert row is not None
    assert moment is not None
    return {
        "moment": moment,
        "updated_before_moment": expected,
        "wal_bytes": int(row[0]),
        "wal_bytes_at_moment": at_moment,
        "updated_rows": updated,
        "seconds": round(time.monotonic() - started, 1),
    }


class PhaseWatch(threading.Thread):
    """When each phase of the restore began, sampled every 0.5 s: from the restore row's
    status and progress message, and (the replay's end) the first pg_dump reading the
    scratch server, a process whose command line names the scratch folder."""

    def __init__(self, catalog: str, scratch: str) -> None:
        super().__init__(daemon=True)
        self.catalog, self.scratch, self.began = catalog, scratch, time.monotonic()
        self.phases: dict[str, float] = {}
        self.fetched = ""  # the last "fetching WAL i/n (x of y MiB)" message
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                with sqlite3.connect(self.catalog, timeout=1) as db:
                    row = db.execute(
                        "SELECT message, status FROM restores ORDER BY id DESC LIMIT 1"
                    ).fetchone()
            except sqlite3.Error:
                continue
            if row is None:
                continue
            message, status = row
            if message and "fetching WAL" in message:
                self.fetched = message
            for phase in ("fetching WAL", "replaying"):
                if message and phase in message and phase not in self.phases:
                    self.phases[phase] = round(time.monotonic() - self.began, 1)
            if status and "Running" in status and "running" not in self.phases:
                self.phases["running"] = round(time.monotonic() - self.began, 1)
            if "dumping" not in self.phases and self._scratch_dump():
                self.phases["dumping"] = round(time.monotonic() - self.began, 1)

    def _scratch_dump(self) -> bool:
        for process in psutil.process_iter(["name", "cmdline"]):
            command = " ".join(process.info["cmdline"] or [])
            if process.info["name"] == "pg_dump" and self.scratch in command:
                return True
        return False


def catalog_times(catalog: str) -> dict[str, float]:
    with sqlite3.connect(catalog) as db:
        row = db.execute(
            "SELECT created_at, started_at, finished_at, status FROM restores "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
    created, started, finished, status = row
    if status != "Success":
        raise RuntimeError(f"the restore ended {status}")

    def at(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    facts = {"queue_to_success_s": round(at(finished) - at(created), 1)}
    if started:
        facts["started_to_success_s"] = round(at(finished) - at(started), 1)
    return facts


def run_restore_bench(
    fleet: PitrBenchFleet, *, data: DataSet, scale: float, wal_bytes: int
) -> dict[str, Any]:
    tools = programs()
    source = fleet.cluster()
    log(f"restore: the {data.kind} data set (scale {scale})")
    init_s = generate(fleet, source, data, scale)
    url = source.url_for(data.database)
    size = int(_scalar(url, "SELECT pg_database_size(current_database())"))
    rows = int(_scalar(url, f"SELECT max({data.key}) FROM {data.table}"))
    fleet.configure(NAMESPACE, url)
    streamer = fleet.spawn("wal-restore", "wal")
    worker = fleet.worker()
    wait_for(lambda: window_of(NAMESPACE).run, timeout=120, what="the streamer shipping")
    log("restore: the base backup (backfleet backup --wait)")
    started = time.monotonic()
    fleet.cli("backup", "--namespace", NAMESPACE, "--wait", timeout=1800)
    backup_s = time.monotonic() - started
    before = data.sum(url)
    log(f"restore: writing {wal_bytes / MiB:.0f} MiB of WAL")
    wal = write_wal(url, data, rows, wal_bytes)
    moment: datetime = wal["moment"]
    expected = before + wal["updated_before_moment"]
    started = time.monotonic()
    window = wait_for(
        lambda: (
            (found := window_of(NAMESPACE)).latest is not None and found.latest > moment and found
        ),
        timeout=900,
        what="the WAL shipped past T",
        every=1.0,
    )
    wal["ship_wait_s"] = round(time.monotonic() - started, 1)
    fleet.stop(streamer)
    catalog = fleet.env["DATABASE_URL"].removeprefix("sqlite:///")
    stored_base = _base_backup_size(catalog)
    load_before = os.getloadavg()
    log(f"restore: backfleet restore --to-time {moment.isoformat()} --wait")
    watch = PhaseWatch(catalog, fleet.env["PITR_SCRATCH_DIR"])
    watch.start()
    started = time.monotonic()
    out = fleet.cli(
        *("restore", "--namespace", NAMESPACE, "--to-time", _rfc3339(moment)),
        *("--wait", "--json"),
        timeout=3600,
    )
    backfleet_s = time.monotonic() - started
    watch.stopping.set()
    answer = json.loads(out.strip().splitlines()[-1])
    if answer.get("status") != "Success":
        raise RuntimeError(f"the restore: {answer}")
    restored = data.sum(url)
    fleet.stop(worker)
    log(f"restore: Backfleet {backfleet_s:.1f} s; pg_dump -Fc and pg_restore of the same data")
    dump = fleet.folder / "bench.dump"
    dump_s = timed([tools["pg_dump"], "-Fc", "-f", str(dump), "-d", url], timeout=1800)
    empty = fleet.database(source, "pg_restore_target")
    pg_restore_s = timed([tools["pg_restore"], "-d", empty, str(dump)], timeout=1800)
    return {
        "data": data.kind,
        "scale": scale,
        "database": data.database,
        "database_bytes": size,
        "table": data.table,
        "table_rows": rows,
        "generate_s": round(init_s, 1),
        "base_backup_s": round(backup_s, 1),
        "base_backup_bytes": stored_base,
        "wal": {**wal, "moment": moment.isoformat()},
        "window": {
            "earliest": window.earliest.isoformat(),
            "latest": window.latest.isoformat(),
        },
        "backfleet_restore_s": round(backfleet_s, 1),
        "backfleet_catalog": catalog_times(catalog),
        "backfleet_phases": watch.phases,
        "backfleet_fetched": _fetched(watch.fetched),
        "expected_sum": str(expected),
        "restored_sum": str(restored),
        "pg_dump_s": round(dump_s, 1),
        "dump_bytes": dump.stat().st_size,
        "pg_restore_s": round(pg_restore_s, 1),
        "pg_restore_sum": str(data.sum(empty)),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def _base_backup_size(catalog: str) -> dict[str, int]:
    """The stored and the source bytes of the newest base backup (pg_basebackup's tar)."""
    with sqlite3.connect(catalog) as db:
        row = db.execute(
            "SELECT size, source_size FROM artifacts WHERE format = 'pgbase' ORDER BY id DESC"
        ).fetchone()
    return {"stored": int(row[0] or 0), "tar": int(row[1] or 0)}


def _fetched(message: str) -> dict[str, float]:
    """`db: fetching WAL 3/40 (1.2 of 30.5 MiB)` -> the files and stored MiB fetched in all."""
    found = re.search(r"fetching WAL \d+/(\d+) \([\d.]+ of ([\d.]+) MiB\)", message)
    return {"files": int(found[1]), "stored_mib": float(found[2])} if found else {}


def _rfc3339(moment: datetime) -> str:
    from workers.timestamps import format_moment

    return format_moment(moment)
