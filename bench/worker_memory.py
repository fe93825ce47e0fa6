"""The whole backup worker's memory and speed, one pool shape at a time (no peers).

    python -m bench.worker_memory --size 1G --runs 3 --fleet threads --fleet prefork
    python -m bench.worker_memory --fleet threads --fleet two=threads:BACKUP_UPLOAD_CONCURRENCY=2

A piece of `make bench` run on its own: the S3 server (`rclone serve s3`), the
generated directory, and one `CeleryFleet` (bench/celery_worker.py) per
`--fleet NAME[=POOL][@TREE][:VAR=VALUE,...]` (the pool defaults to NAME; TREE, a
checkout whose code that fleet runs, to this one; the variables are the worker's
settings), all started at once and kept; then `--runs` rounds,
each one backup requested of each fleet in turn through the API
(bench/api_backup.py), so a busy neighbour slows every fleet alike, while the
worker's summed PSS is sampled every 0.1 s. Each backup prints one JSON line: the
fleet, its pool, the wall seconds, MB/s, queue-to-Success seconds, the worker's
CPU seconds, the whole worker's peak PSS, its peak private memory (USS: PSS less
its share of the pages it maps with other processes, such as the libraries of
other Pythons on the machine, a share that varies with what else runs) and its
PSS just before the request (idle), the number of worker processes, and the
load average then (the machine may be shared). Environment variables
`BACKUP_*` reach every worker as in the harness.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import datagen
from bench.celery_worker import CeleryFleet, children_of, memory_kib, sampling
from bench.common import DATA_DIR, REPO_DIR, reread, size_label
from bench.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

GiB = 1024**3
BUCKET = "worker-memory"


def store_env(server: S3Server, bucket: str = BUCKET) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "OBJECT_STORE_LOCATION_TYPE": "s3",
            "AWS_S3_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY": ACCESS_KEY,
            "AWS_SECRET_KEY": SECRET_KEY,
            "AWS_S3_BUCKET_NAME": bucket,
            "AWS_S3_REGION": REGION,
            "AWS_S3_ADDRESSING_STYLE": "path",
            "BOTO_DISABLE_CRT": os.environ.get("BOTO_DISABLE_CRT", "true"),
        }
    )
    return env


def whole_pss_kib(parent: int) -> int:
    return sum(memory_kib(pid)["Pss"] for pid in (parent, *children_of(parent)))


def one_run(
    name: str, fleet: CeleryFleet, server: S3Server, size: int, bucket: str
) -> dict[str, Any]:
    source = datagen.directory_path(size)
    reread([source])
    idle = whole_pss_kib(fleet.parent_pid)
    load = os.getloadavg()
    cpu = fleet.worker_cpu_s()
    started = time.monotonic()
    with sampling(fleet) as sampler:
        done = subprocess.run(
            fleet.api_command(), env=fleet.api_env, capture_output=True, timeout=3600, check=False
        )
    wall = time.monotonic() - started
    cpu = fleet.worker_cpu_s() - cpu
    backup = fleet.last_backup()
    server.remove_bucket(bucket)
    server.create_bucket(bucket)
    return {
        "fleet": name,
        "pool": fleet.pool,
        "size": size_label(size),
        "ok": done.returncode == 0 and backup.get("status") == "Success",
        "wall_s": round(wall, 2),
        "mb_s": round(size / 1e6 / wall, 1),
        "queue_s": backup.get("queue_s"),
        "worker_cpu_s": round(cpu, 2),
        "peak_pss_mib": round(sampler.peak_tree_pss / 1024, 1),
        "peak_private_mib": round(sampler.peak_tree_private / 1024, 1),
        "idle_pss_mib": round(idle / 1024, 1),
        "processes": 1 + len(children_of(fleet.parent_pid)),
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def parse_fleet(text: str) -> tuple[str, str, Path, dict[str, str]]:
    """NAME[=POOL][@TREE][:VAR=VALUE,...] -> (name, pool, tree, settings)."""
    head, _, tail = text.partition(":")
    head, _, tree = head.partition("@")
    name, _, pool = head.partition("=")
    settings = dict(item.split("=", 1) for item in tail.split(",") if item)
    return name, pool or name, Path(tree) if tree else REPO_DIR, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size", default="1G", help="1G or 10G")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fleet", action="append", help="NAME[=POOL][:VAR=VALUE,...]")
    args = parser.parse_args(argv)
    size = int(args.size.rstrip("G")) * GiB
    source = datagen.ensure_directory(size, log=lambda m: print(m, file=sys.stderr))
    specs = [parse_fleet(text) for text in args.fleet or ["threads"]]
    with S3Server(DATA_DIR / "s3-worker-memory") as server, contextlib.ExitStack() as stack:
        fleets = []
        for index, (name, pool, tree, settings) in enumerate(specs):
            bucket = f"{BUCKET}-{index}"
            server.create_bucket(bucket)
            env = {**store_env(server, bucket), **settings, "PYTHONPATH": str(tree)}
            fleet = CeleryFleet(source, env, pool=pool, repo=tree)
            fleets.append((name, stack.enter_context(fleet), bucket))
        time.sleep(2)  # let the workers settle after `ready`
        for _ in range(args.runs):
            for name, fleet, bucket in fleets:
                print(json.dumps(one_run(name, fleet, server, size, bucket)), flush=True)
    return 0


if __name__ == "__main__":
    os.chdir(REPO_DIR)
    sys.exit(main())
