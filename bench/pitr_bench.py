"""PostgreSQL point-in-time recovery, measured (issue 21's targets): the RPO of a sudden
stop of the database host, and the restore time of a ~1 GB base backup plus ~0.5 GB of
WAL to a moment, beside pg_restore.

    .venv/bin/python -m bench.pitr_bench            # or: make bench-pitr
    .venv/bin/python -m bench.pitr_bench --rpo-runs 3 --skip restore
    .venv/bin/python -m bench.pitr_bench --skip rpo --data pgbench --scale 70
    .venv/bin/python -m bench.pitr_bench --render   # RESULTS.md again from bench/out/pitr.json

bench/pitr_rpo.py and bench/pitr_restore.py say what each scenario does; bench/pitr_fleet.py
what runs (all under a folder in /tmp, removed at the end; a SIGTERM cleans up too). The
figures go to bench/out/pitr.json and to the section of bench/RESULTS.md between
`<!-- pitr-bench:start -->` and `<!-- pitr-bench:end -->` (a run with --skip leaves
RESULTS.md alone).
"""

import argparse
import json
import os
import signal
import sys
import time
import uuid
from types import FrameType
from typing import Any

from bench.common import OUT_DIR, write_json
from bench.pitr_fleet import PitrBenchFleet
from bench.pitr_report import machine, render, write_section
from bench.pitr_restore import DATA_SETS, MiB, run_restore_bench
from bench.pitr_rpo import log, run_rpo


def _terminated(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the fleet's __exit__ stops and removes everything


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpo-runs", type=int, default=int(os.environ.get("BENCH_PITR_RUNS", 5)))
    parser.add_argument(
        "--data", choices=sorted(DATA_SETS), default=os.environ.get("BENCH_PITR_DATA", "generated")
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="of the data set: bench/datagen.py's (1.0: ~1 GB), or pgbench's (70: ~1 GB)",
    )
    parser.add_argument(
        "--wal-mib", type=int, default=int(os.environ.get("BENCH_PITR_WAL_MIB", 512))
    )
    parser.add_argument("--skip", choices=("rpo", "restore"), action="append", default=[])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    result_file = OUT_DIR / "pitr.json"
    if args.render:
        write_section(render(json.loads(result_file.read_text())))
        return 0
    signal.signal(signal.SIGTERM, _terminated)
    seed = args.seed if args.seed is not None else uuid.uuid4().int % 10**6
    results: dict[str, Any] = {"machine": machine(), "settings": _settings()}
    started = time.monotonic()
    with PitrBenchFleet() as fleet:
        results["settings"]["folder"] = str(fleet.folder)
        if "rpo" not in args.skip:
            log(f"RPO: {args.rpo_runs} runs (seed {seed})")
            results["rpo"] = run_rpo(fleet, args.rpo_runs, seed)
        if "restore" not in args.skip:
            scale = args.scale or (1.0 if args.data == "generated" else 70.0)
            results["restore"] = run_restore_bench(
                fleet, data=DATA_SETS[args.data], scale=scale, wal_bytes=args.wal_mib * MiB
            )
    results["machine"]["load_after"] = os.getloadavg()
    results["minutes"] = round((time.monotonic() - started) / 60, 1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_json(result_file, results)
    if not args.skip:
        write_section(render(results))
    log(f"written: {result_file}" + ("" if args.skip else " and bench/RESULTS.md"))
    return 0


def _settings() -> dict[str, str]:
    """The WAL and PITR settings the run used (Backfleet's defaults unless set)."""
    from workers.settings import Settings

    fields = Settings.model_fields
    chosen = {
        name.upper(): str(fields[name].default) for name in ("wal_ship_interval", "wal_lock_ttl")
    }
    chosen.update({k: v for k, v in os.environ.items() if k.startswith(("WAL_", "PITR_"))})
    return chosen


if __name__ == "__main__":
    sys.exit(main())
