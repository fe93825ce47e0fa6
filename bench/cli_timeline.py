"""Where `backfleet backup --wait` spends its time: a timeline of the CLI process.

    .venv/bin/python -m bench.cli_timeline [--runs 6] [--mib 16] [--source DIR] [--no-wait]

Starts a fleet as bench/celery_worker.py does (embedded Redis, SQLite catalog, a prefork
worker with one child), with a local store in a temporary folder, and runs the command
`--runs` times on a small directory. For each run it prints, from the catalog's own
timestamps and the process's /proc/PID/stat sampled every SAMPLE_S:
- `start→pending`: from the command's start to the Pending row's `created_at`;
- `pending→success`: the worker's share (queue, backup, catalog);
- `success→exit`: from `finished_at` to the process's exit (the wait's lag and the exit);
- the CLI's CPU seconds in each of the three stretches, and in all (wait4's rusage).
Clock ticks are 10 ms: CPU per stretch is that coarse; the total is exact.
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.celery_worker import CeleryFleet, _catalog_time
from bench.common import OUT_DIR, REPO_DIR
from bench.measure import process_cpu_s

SAMPLE_S = 0.005


class CpuTrace(threading.Thread):
    """(wall clock, CPU seconds) of one process, until it is gone."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.samples.append((time.time(), process_cpu_s(self.pid)))
            time.sleep(SAMPLE_S)

    def cpu_at(self, moment: float) -> float:
        """The CPU seconds last seen at or before `moment`."""
        seen = 0.0
        for when, cpu in self.samples:
            if when > moment:
                break
            seen = max(seen, cpu)
        return seen


def make_source(folder: Path, mib: int) -> Path:
    """`mib` MiB in 64 files, half random and half text, like the bench's data."""
    source = folder / "data"
    source.mkdir()
    chunk = max(1, mib * 1024 * 1024 // 64)
    for index in range(64):
        body = os.urandom(chunk) if index % 2 else (b"name,email,amount\n" * (chunk // 18 + 1))
        (source / f"f{index:02d}.bin").write_bytes(body[:chunk])
    return source


def one_run(fleet: CeleryFleet, args: list[str]) -> dict[str, float]:
    started = time.time()
    process = subprocess.Popen(
        fleet.cli_command(*args),
        env=fleet.env,
        cwd=REPO_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    trace = CpuTrace(process.pid)
    trace.start()
    _pid, status, usage = os.wait4(process.pid, 0)
    ended = time.time()
    trace.done.set()
    trace.join()
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args} exited {os.waitstatus_to_exitcode(status)}: {errors[-800:]}")
    with sqlite3.connect(fleet.folder / "catalog.db") as db:
        created_text, finished_text, row_status = db.execute(
            "SELECT created_at, finished_at, status FROM backups ORDER BY id DESC LIMIT 1"
        ).fetchone()
    created = _catalog_time(created_text)
    figures = {
        "wall": ended - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "start→pending": created - started,
        "cpu→pending": trace.cpu_at(created),
    }
    if "--wait" in args:
        assert row_status == "Success", row_status
        finished = _catalog_time(finished_text)
        figures["pending→success"] = finished - created
        figures["success→exit"] = ended - finished
        figures["cpu wait"] = trace.cpu_at(finished) - figures["cpu→pending"]
        figures["cpu→exit"] = figures["cpu"] - trace.cpu_at(finished)
    else:
        # The next run must not find this one active: wait for the worker to finish it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with sqlite3.connect(fleet.folder / "catalog.db") as db:
                newest = "SELECT status FROM backups ORDER BY id DESC LIMIT 1"
                (now,) = db.execute(newest).fetchone()
            if now in ("Success", "Failed"):
                break
            time.sleep(0.1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--mib", type=int, default=16, help="size of the generated directory")
    parser.add_argument("--source", type=Path, help="back this directory up instead")
    parser.add_argument("--no-wait", action="store_true", help="time `backup` without --wait")
    options = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cli-timeline-", dir=OUT_DIR) as folder:
        source = options.source or make_source(Path(folder), options.mib)
        store = {
            "OBJECT_STORE_LOCATION_TYPE": "local",
            "OBJECT_STORE_LOCATION_LOCAL": str(Path(folder) / "store"),
        }
        args = ["backup"] if options.no_wait else ["backup", "--wait"]
        with CeleryFleet(source, store) as fleet:
            one_run(fleet, args)  # the pool child's first task loads what backups need
            rows = [one_run(fleet, args) for _ in range(options.runs)]
    print(f"load: {os.getloadavg()[0]:.2f}; {' '.join(args)}; {len(rows)} runs (median, min-max)")
    for name in rows[0]:
        values = [row[name] for row in rows]
        low, high = min(values), max(values)
        print(f"  {name:<16} {statistics.median(values):7.3f} s  ({low:.3f}-{high:.3f})")


if __name__ == "__main__":
    main()
