"""`make bench`: Backfleet against its peers, to one local S3 server, in one run.

Scenarios (BENCH_SCENARIOS, default `dir,db`):
  dir  for each size in BENCH_SIZES (default `1G,10G`): the directory's backup
       by aws / rclone / restic / Backfleet, then Backfleet's restore of it.
  db   the ~1 GB database's backup by `pg_dump -Fc | aws`,
       `pg_dump -Fc -Z0 | zstd -1 | aws` and Backfleet; its restore by
       `pg_restore` from a local file and by Backfleet, each into a fresh database.

Each contender runs BENCH_RUNS times (default 3), in an order that rotates
from run to run; the input is re-read right before every timed run (this
machine drops idle pages within seconds). Results go to bench/out/results.json
as they come and to bench/RESULTS.md at the end (bench/report.py).

Other knobs: BENCH_TOOLS (a subset of aws,rclone,restic,backfleet,pgdump-fc,
pgdump-z0-zstd,pg_restore), BENCH_BACKFLEET_STORE (auto|s3|local; auto takes
s3 when workers.stores.make_store can build it, else the local store for a
smoke run), BENCH_POSTGRES_URL (a superuser URL of the server to use; default
postgresql://postgres@127.0.0.1:5432/postgres), BENCH_DB_SCALE (1.0 ≈ 1 GB),
BENCH_QUIET_WAIT (seconds to wait before each timed run for other processes
to calm down, default 30; 0 turns it off), BENCH_BACKFLEET_API (worker, the
default: upload_artifact with every BACKUP_* setting, as a worker runs it; or
store_artifact).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import datagen, peers
from bench.celery_worker import POOL as WORKER_POOL
from bench.celery_worker import CeleryFleet, sampling
from bench.common import (
    DATA_DIR,
    MB,
    OUT_DIR,
    PROJECT_PYTHON,
    REPO_DIR,
    GiB,
    human_size,
    parse_size,
    read_json,
    reread,
    size_label,
    tree_bytes,
    write_json,
)
from bench.measure import NCPU, Measurement, run_measured, wait_for_quiet
from bench.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

ALL_TOOLS = [
    "aws",
    "rclone",
    "restic",
    "backfleet",
    "celery-worker",
    "celery-api",
    "pgdump-fc",
    "pgdump-z0-zstd",
    "pg_restore",
]
RESTORE_DB = "backfleet_bench_restore"
PEERS = ("aws", "rclone", "restic")
CELERY_LABEL = "Backfleet through a Celery worker (backfleet backup --wait)"
CELERY_API_LABEL = "Backfleet through a Celery worker (POST /ondemandbackup, polled)"
CELERY_TOOLS = ("celery-worker", "celery-api")
LOCAL_STORE = DATA_DIR / "local-store"
RESULTS_JSON = OUT_DIR / "results.json"
LOGS = OUT_DIR / "logs"


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


@dataclass
class Config:
    sizes: list[int]
    runs: int
    scenarios: list[str]
    tools: list[str]
    postgres_url: str
    backfleet_store: str
    db_scale: float
    quiet_wait: float

    @classmethod
    def from_args(cls, argv: list[str] | None) -> "Config":
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES", "1G,10G"))
        parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
        parser.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", "dir,db"))
        parser.add_argument("--tools", default=os.environ.get("BENCH_TOOLS", ",".join(ALL_TOOLS)))
        parser.add_argument(
            "--postgres-url",
            default=os.environ.get("BENCH_POSTGRES_URL", datagen.DEFAULT_PG_URL),
        )
        parser.add_argument(
            "--backfleet-store",
            choices=["auto", "s3", "local"],
            default=os.environ.get("BENCH_BACKFLEET_STORE", "auto"),
        )
        parser.add_argument(
            "--db-scale", type=float, default=float(os.environ.get("BENCH_DB_SCALE", "1.0"))
        )
        parser.add_argument(
            "--quiet-wait",
            type=float,
            default=float(os.environ.get("BENCH_QUIET_WAIT", "30")),
            help="wait up to this many seconds before each timed run for other processes "
            "to use under a quarter of a core (0: do not wait)",
        )
        args = parser.parse_args(argv)
        split = [item.strip() for item in args.sizes.split(",") if item.strip()]
        tools = [tool.strip() for tool in args.tools.split(",") if tool.strip()]
        unknown = set(tools) - set(ALL_TOOLS)
        if unknown:
            parser.error(f"unknown tools {sorted(unknown)}; choose from {ALL_TOOLS}")
        return cls(
            sizes=[parse_size(size) for size in split],
            runs=max(1, args.runs),
            scenarios=[item.strip() for item in args.scenarios.split(",") if item.strip()],
            tools=tools,
            postgres_url=args.postgres_url,
            backfleet_store=args.backfleet_store,
            db_scale=args.db_scale,
            quiet_wait=args.quiet_wait,
        )


def timeout_for(size: int) -> float:
    """Generous: 2 minutes plus 4 MB/s, so only a hung tool hits it."""
    return 120.0 + size / (4 * MB)


def rotated(items: list[str], run: int) -> list[str]:
    shift = (run - 1) % len(items) if items else 0
    return items[shift:] + items[:shift]


@dataclass
class Contender:
    id: str
    label: str
    role: str  # "peer" or "backfleet"
    runs: list[dict[str, Any]] = field(default_factory=list)
    command: str = ""


@dataclass
class Scenario:
    id: str
    kind: str  # dir-backup, dir-restore, db-backup, db-restore
    title: str
    input_bytes: int
    input: dict[str, Any]
    contenders: list[Contender]

    def contender(self, cid: str) -> Contender:
        return next(item for item in self.contenders if item.id == cid)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "input_bytes": self.input_bytes,
            "input": self.input,
            "contenders": [vars(item) for item in self.contenders],
        }


def run_record(run: int, measurement: Measurement, input_bytes: int, main: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "run": run,
        "ok": measurement.ok,
        "returncode": measurement.returncode,
        "timed_out": measurement.timed_out,
        "wall_s": round(measurement.wall_s, 3),
        "cpu_s": round(measurement.cpu_s, 3),
        "mbps": round(input_bytes / measurement.wall_s / MB, 2) if measurement.wall_s else 0,
        "peak_tree_rss": measurement.peak_tree_rss,
        "peak_main_rss": measurement.peak_rss_by_name.get(main, 0),
        "peak_rss_by_name": measurement.peak_rss_by_name,
        "server_peak_rss": measurement.watched_peak_rss,
        "server_cpu_s": round(measurement.watched_cpu_s, 3),
        "db_server_cpu_s": round(measurement.service_cpu_s, 3),
        "kernel_cpu_s": round(measurement.kernel_cpu_s, 3),
        "background_cpu_s": round(measurement.background_cpu_s, 3),
        "background_share": round(measurement.background_cpu_s / (measurement.wall_s * NCPU), 3)
        if measurement.wall_s
        else 0,
    }
    if not measurement.ok:
        record["error"] = measurement.log[-1500:]
    return record


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.tools = peers.Tools.find()
        self.results: dict[str, Any] = {}
        self.scenarios: list[Scenario] = []
        self.server: S3Server | None = None
        self.backfleet_store = "local"
        self.aws_env: dict[str, str] = {}
        self.service_pids: list[int] = []  # PostgreSQL's postmaster during the db scenario

    # --- bookkeeping ---
    def save(self) -> None:
        self.results["scenarios"] = [scenario.to_json() for scenario in self.scenarios]
        write_json(RESULTS_JSON, self.results)

    def quiet(self) -> dict[str, float]:
        """Wait a little for other processes to calm down; say how busy they still were."""
        if self.config.quiet_wait <= 0:
            return {}
        waited, others = wait_for_quiet(
            self.config.quiet_wait, exclude_pid=self.server.pid if self.server else None
        )
        if others >= 0.25:
            log(f"  other processes still use {others:.1f} cores after {waited:.0f}s; going on")
        return {"quiet_wait_s": round(waited, 1), "others_cores_before": round(others, 2)}

    def wants(self, tool: str) -> bool:
        return tool in self.config.tools

    # --- entry ---
    def run(self) -> int:
        started = time.time()
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(LOGS, ignore_errors=True)
        self.results = {
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "config": {
                "sizes": [size_label(size) for size in self.config.sizes],
                "runs": self.config.runs,
                "scenarios": self.config.scenarios,
                "tools": self.config.tools,
                "backfleet_store_requested": self.config.backfleet_store,
                "db_scale": self.config.db_scale,
                "quiet_wait": self.config.quiet_wait,
                "backfleet_api": os.environ.get("BENCH_BACKFLEET_API", "worker"),
                "worker_pool": WORKER_POOL,
                "backfleet_env": {
                    key: value
                    for key, value in os.environ.items()
                    if key.startswith(("BACKUP_", "AWS_S3_")) and "KEY" not in key
                },
            },
            "machine": machine_info(),
            "versions": tool_versions(self.tools),
            "notes": [],
        }
        missing = self.tools.missing("tar", "zstd", "aws", "rclone", "restic")
        if "db" in self.config.scenarios:
            missing += self.tools.missing("pg_dump", "pg_restore", "psql")
        if missing:
            log(f"missing tools: {missing} (bench/run.sh installs them); their rows are skipped")
            self.results["notes"].append(f"missing tools, rows skipped: {', '.join(missing)}")
        self.save()
        status = 0
        server = S3Server(DATA_DIR / "s3")
        try:
            server.start()
            self.server = server
            log(f"rclone serve s3 on {server.endpoint} (pid {server.pid})")
            self.aws_env = peers.aws_env(server.endpoint, DATA_DIR / "state")
            if self.wants("backfleet") or self.wants("celery-worker"):
                self.backfleet_store = self.choose_store()
            self.results["backfleet_store"] = self.backfleet_store
            if "dir" in self.config.scenarios:
                for size in self.config.sizes:
                    self.directory_scenario(size)
            if "db" in self.config.scenarios:
                self.database_scenario()
        except KeyboardInterrupt:
            log("interrupted")
            status = 130
        except Exception as exc:
            log(f"failed: {type(exc).__name__}: {exc}")
            self.results["notes"].append(f"the run stopped early: {type(exc).__name__}: {exc}")
            status = 1
            raise
        finally:
            server.stop()
            shutil.rmtree(LOCAL_STORE, ignore_errors=True)
            shutil.rmtree(DATA_DIR / "restore", ignore_errors=True)
            shutil.rmtree(DATA_DIR / "restic-cache", ignore_errors=True)
            self.results["finished"] = datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            )
            self.results["duration_s"] = round(time.time() - started, 1)
            self.save()
            stamp = self.results["started"].replace(":", "").replace("+0000", "Z")
            history = OUT_DIR / "history" / f"results-{stamp}.json"
            history.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(RESULTS_JSON, history)
            from bench import report

            report.write(RESULTS_JSON)
            log(f"results: {RESULTS_JSON} and {report.RESULTS_MD}")
            log(f"took {self.results['duration_s'] / 60:.1f} min")
        return status

    def choose_store(self) -> str:
        wanted = self.config.backfleet_store
        note = (
            "Backfleet ran against its LOCAL store (a smoke run): its figures are not "
            "comparable with the peers' (which upload to S3) and the verdicts are provisional."
        )
        if wanted == "local":
            self.results["notes"].append(note)
            return "local"
        bucket = "backfleet-probe"
        assert self.server is not None
        self.server.create_bucket(bucket)
        probe = self.backfleet(["probe", "--store", "s3"], bucket, LOGS / "backfleet-probe.log")
        self.server.remove_bucket(bucket)
        if probe.ok:
            return "s3"
        if wanted == "s3":
            raise RuntimeError(f"Backfleet's S3 store is not usable: {probe.log[-500:]}")
        note = "Backfleet's S3 store could not be built. " + note
        log(note)
        self.results["notes"].append(note)
        return "local"

    # --- Backfleet in its own process ---
    def backfleet_env(self, bucket: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not (key.startswith("AWS_") and not key.startswith("AWS_S3_"))
        }
        assert self.server is not None
        env.update(
            {
                "OBJECT_STORE_LOCATION_TYPE": self.backfleet_store,
                "OBJECT_STORE_LOCATION_LOCAL": str(LOCAL_STORE),
                "AWS_S3_ENDPOINT_URL": self.server.endpoint,
                "AWS_ACCESS_KEY": ACCESS_KEY,
                "AWS_SECRET_KEY": SECRET_KEY,
                "AWS_S3_BUCKET_NAME": bucket,
                "AWS_S3_REGION": REGION,
                "AWS_S3_ADDRESSING_STYLE": "path",
                "PYTHONUNBUFFERED": "1",
                # As in the image, which has no awscrt: the dev venv has it (for the CRC32C
                # tests), and botocore would then sign with the CRT, copying every part.
                "BOTO_DISABLE_CRT": os.environ.get("BOTO_DISABLE_CRT", "true"),
            }
        )
        return env

    def backfleet(
        self, args: list[str], bucket: str, log_path: Path, timeout: float = 120.0
    ) -> Measurement:
        command = [str(PROJECT_PYTHON), "-m", "bench.backfleet_runner", *args]
        assert self.server is not None
        return run_measured(
            command,
            env=self.backfleet_env(bucket),
            timeout=timeout,
            log_path=log_path,
            cwd=REPO_DIR,
            watch_pid=self.server.pid,
            service_pids=self.service_pids,
        )

    def backfleet_stored_files(self, bucket: str) -> list[Path]:
        assert self.server is not None
        if self.backfleet_store == "local":
            return [path for path in LOCAL_STORE.rglob("*") if path.is_file()]
        return self.server.bucket_files(bucket)

    def clean_backfleet(self, bucket: str) -> None:
        assert self.server is not None
        self.server.remove_bucket(bucket)
        shutil.rmtree(LOCAL_STORE, ignore_errors=True)

    # --- directory ---
    def directory_scenario(self, size: int) -> None:
        label = size_label(size)
        free = shutil.disk_usage(DATA_DIR.parent).free
        have = datagen.directory_path(size).is_dir()
        need = (0 if have else size) + 2 * size + 2 * GiB
        if free < need:
            message = f"dir {label}: skipped, {free / GiB:.0f} GiB free < {need / GiB:.0f} needed"
            log(message)
            self.results["notes"].append(message)
            return
        source = datagen.ensure_directory(size, log=log)
        files, total = tree_bytes(source)
        meta = read_json(DATA_DIR / f"dir-{label}.json")
        info = {"path": str(source), "files": files, "bytes": total, **meta}
        tools = [tool for tool in ("aws", "rclone", "restic", "backfleet") if self.wants(tool)]
        celery = [tool for tool in CELERY_TOOLS if self.wants(tool)]
        if self.backfleet_store != "s3":
            celery = []
        tools = celery + tools
        labels = {
            "aws": "tar | zstd -1 | aws s3 cp -",
            "rclone": "tar | zstd -1 | rclone rcat",
            "restic": "restic backup",
            "backfleet": f"Backfleet runner ({self.backfleet_store} store, no queue or catalog)",
            "celery-worker": CELERY_LABEL,
            "celery-api": CELERY_API_LABEL,
        }
        backup = Scenario(
            id=f"dir-{label}-backup",
            kind="dir-backup",
            title=f"Directory backup, {human_size(size)} ({files} files)",
            input_bytes=total,
            input=info,
            contenders=[
                Contender(tool, labels[tool], "peer" if tool in PEERS else "backfleet")
                for tool in tools
            ],
        )
        restore = Scenario(
            id=f"dir-{label}-restore",
            kind="dir-restore",
            title=f"Directory restore, {human_size(size)}",
            input_bytes=total,
            input=info,
            contenders=[Contender("backfleet", labels["backfleet"], "backfleet")],
        )
        self.scenarios.append(backup)
        if self.wants("backfleet"):
            self.scenarios.append(restore)
        timeout = timeout_for(total)
        with contextlib.ExitStack() as stack:
            fleet = stack.enter_context(self.celery_fleet(label, source)) if celery else None
            for run in range(1, self.config.runs + 1):
                for tool in rotated(tools, run):
                    log(f"dir {label} run {run}/{self.config.runs}: {labels[tool]}")
                    if tool == "backfleet":
                        self.backfleet_directory(backup, restore, run, source, files, timeout)
                    elif tool in CELERY_TOOLS:
                        assert fleet is not None
                        self.celery_directory(backup, tool, fleet, run, source, timeout)
                        self.say(backup, tool, run)
                    else:
                        self.peer_directory(backup, tool, run, source, timeout)
                        self.say(backup, tool, run)
                    self.save()

    # --- Backfleet as users run it: a request through a Celery worker ---
    def celery_bucket(self, label: str) -> str:
        return f"celery-{label.lower()}"

    @contextlib.contextmanager
    def celery_fleet(self, label: str, source: Path) -> Iterator[CeleryFleet]:
        """A broker, a catalog and a worker (BENCH_WORKER_POOL), started once per size like a
        deployment."""
        assert self.server is not None
        bucket = self.celery_bucket(label)
        self.server.create_bucket(bucket)
        try:
            with CeleryFleet(source, self.backfleet_env(bucket)) as fleet:
                log(f"dir {label}: Celery worker ready (pid {fleet.parent_pid})")
                yield fleet
        finally:
            self.server.remove_bucket(bucket)

    def celery_directory(
        self,
        scenario: Scenario,
        tool: str,
        fleet: CeleryFleet,
        run: int,
        source: Path,
        timeout: float,
    ) -> None:
        """One backup requested of the running fleet (`backfleet backup --wait`, or the API
        called as a script does), timed from the request's start to its end."""
        assert self.server is not None
        contender = scenario.contender(tool)
        if tool == "celery-api":
            command, env = fleet.api_command(), fleet.api_env
            contender.command = "python -I -S bench/api_backup.py URL (POST, then GET every 0.1 s)"
        else:
            command, env = fleet.cli_command("backup", "--wait"), fleet.env
            contender.command = "backfleet backup --wait"
        bucket = self.celery_bucket(size_tag(scenario))
        gate = self.quiet()
        reread([source])
        cpu_before = fleet.worker_cpu_s()
        with sampling(fleet) as sampler:
            measurement = run_measured(
                command,
                env=env,
                timeout=timeout,
                log_path=LOGS / f"{scenario.id}-{tool}-r{run}.log",
                cwd=REPO_DIR,
                watch_pid=self.server.pid,
                service_pids=fleet.service_pids,
            )
        worker_cpu = fleet.worker_cpu_s() - cpu_before
        record = run_record(run, measurement, scenario.input_bytes, "python")
        record.update(gate)
        backup = fleet.last_backup()
        memory = fleet.memory()
        # The worker's (and the API's) CPU is the backup's own: the client's column.
        record["client_cpu_s"] = record["cpu_s"]
        record["cpu_s"] = round(record["cpu_s"] + worker_cpu, 3)
        record["db_server_cpu_s"] = round(max(0.0, record["db_server_cpu_s"] - worker_cpu), 3)
        record["worker_cpu_s"] = round(worker_cpu, 3)
        record["queue_s"] = backup.get("queue_s")
        record["worker_peak_rss"] = memory["child_peak_rss"]
        record["worker_tree_peak_pss"] = sampler.peak_tree_pss * 1024
        record["child_peak_private"] = sampler.peak_child["Private"] * 1024
        record["child_peak_pss"] = sampler.peak_child["Pss"] * 1024
        record["parent_rss"] = memory["parent_rss"]
        if record["ok"] and backup.get("status") != "Success":
            record["ok"] = False
            record["error"] = f"the backup ended {backup.get('status')}"
        if record["ok"]:
            stored = self.server.bucket_files(bucket)
            record["stored_bytes"] = sum(path.stat().st_size for path in stored)
        else:
            record["error"] = f"{record.get('error', '')}\n{fleet.worker_log_tail()}"
        contender.runs.append(record)
        # Each run starts from an empty bucket, as the peers' do.
        self.server.remove_bucket(bucket)
        self.server.create_bucket(bucket)

    def peer_directory(
        self, scenario: Scenario, tool: str, run: int, source: Path, timeout: float
    ) -> None:
        assert self.server is not None
        contender = scenario.contender(tool)
        if self.tools.missing(*{"aws": ["aws"], "rclone": ["rclone"], "restic": ["restic"]}[tool]):
            return
        bucket = f"{tool}-{size_tag(scenario)}-r{run}"
        key = f"bench/{scenario.id}.tar.zst"
        self.server.create_bucket(bucket)
        log_path = LOGS / f"{scenario.id}-{tool}-r{run}.log"
        if tool == "aws":
            command = f"{peers.tar_zstd(self.tools, source)} | " + peers.aws_cp(
                self.tools, self.server.endpoint, bucket, key, scenario.input_bytes
            )
            env, main = self.aws_env, "aws"
        elif tool == "rclone":
            command = f"{peers.tar_zstd(self.tools, source)} | " + peers.rclone_rcat(
                self.tools, bucket, key
            )
            env, main = peers.rclone_env(self.server.endpoint), "rclone"
        else:
            cache = DATA_DIR / "restic-cache"
            shutil.rmtree(cache, ignore_errors=True)
            env, main = peers.restic_env(self.server.endpoint, bucket, cache), "restic"
            init = run_measured(
                peers.restic_init(self.tools), env=env, timeout=120, log_path=log_path
            )
            if not init.ok:
                contender.runs.append({"run": run, "ok": False, "error": init.log[-1500:]})
                self.server.remove_bucket(bucket)
                return
            command = peers.restic_backup(self.tools, source)
        contender.command = command
        gate = self.quiet()
        reread([source])
        measurement = run_measured(
            command, env=env, timeout=timeout, log_path=log_path, watch_pid=self.server.pid
        )
        record = run_record(run, measurement, scenario.input_bytes, main)
        record.update(gate)
        if measurement.ok:
            stored = self.server.bucket_files(bucket)
            record["stored_bytes"] = sum(path.stat().st_size for path in stored)
        contender.runs.append(record)
        self.server.remove_bucket(bucket)
        shutil.rmtree(DATA_DIR / "restic-cache", ignore_errors=True)

    def backfleet_directory(
        self,
        backup: Scenario,
        restore: Scenario,
        run: int,
        source: Path,
        files: int,
        timeout: float,
    ) -> None:
        bucket = f"backfleet-{size_tag(backup)}-r{run}"
        key = f"bench/{backup.id}/r{run}/bench.tar.zst"
        result = OUT_DIR / "runner" / f"{backup.id}-r{run}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        assert self.server is not None
        self.clean_backfleet(bucket)
        if self.backfleet_store == "s3":
            self.server.create_bucket(bucket)
        store = ["--store", self.backfleet_store, "--kind", "directory"]
        args = ["backup", *store, "--source", str(source), "--key", key, "--result", str(result)]
        backup.contender("backfleet").command = "python -m bench.backfleet_runner " + " ".join(args)
        gate = self.quiet()
        reread([source])
        measurement = self.backfleet(
            args, bucket, LOGS / f"{backup.id}-backfleet-r{run}.log", timeout
        )
        record = self.runner_record(run, measurement, backup.input_bytes, result)
        record.update(gate)
        backup.contender("backfleet").runs.append(record)
        self.say(backup, "backfleet", run)
        if record["ok"]:
            record["stored_bytes"] = record.pop("artifact_bytes", 0)
            target = DATA_DIR / "restore" / f"dir-{size_tag(backup)}"
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            restored = OUT_DIR / "runner" / f"{restore.id}-r{run}.json"
            args = ["restore", *store, "--target", str(target), "--entry", str(result)]
            args += ["--result", str(restored)]
            restore.contender("backfleet").command = "python -m bench.backfleet_runner " + " ".join(
                args
            )
            gate = self.quiet()
            reread(self.backfleet_stored_files(bucket))
            log(f"dir {size_tag(backup)} run {run}: Backfleet restore")
            measurement = self.backfleet(
                args, bucket, LOGS / f"{restore.id}-backfleet-r{run}.log", timeout
            )
            rec = self.runner_record(run, measurement, restore.input_bytes, restored)
            rec.update(gate)
            if rec["ok"]:
                got = tree_bytes(target)
                rec["verified"] = got == (files, restore.input_bytes)
                if not rec["verified"]:
                    rec["ok"] = False
                    rec["error"] = f"restored {got}, expected {(files, restore.input_bytes)}"
            restore.contender("backfleet").runs.append(rec)
            shutil.rmtree(target, ignore_errors=True)
            self.say(restore, "backfleet", run)
        self.clean_backfleet(bucket)

    def runner_record(
        self, run: int, measurement: Measurement, input_bytes: int, result: Path
    ) -> dict[str, Any]:
        record = run_record(run, measurement, input_bytes, "python")
        try:
            outcome = json.loads(result.read_text())
        except (OSError, ValueError):
            outcome = {"ok": False, "error": "the runner wrote no result"}
        record["worker_peak_rss"] = outcome.get("rss_peak_self", record["peak_main_rss"])
        record["worker_ready_rss"] = outcome.get("rss_ready", 0)
        record["children_peak_rss"] = outcome.get("rss_peak_children", 0)
        record["inner_s"] = round(outcome.get("inner_s", 0.0), 3)
        if "cpu_ready" in outcome:
            record["cpu_ready_s"] = round(outcome["cpu_ready"], 3)
        record["store"] = outcome.get("store", "")
        if "size" in outcome:
            record["artifact_bytes"] = outcome["size"]
            record["source_size"] = outcome.get("source_size", 0)
            record["part_size"] = outcome.get("part_size")
        if not outcome.get("ok", False):
            record["ok"] = False
            record["error"] = str(outcome.get("error", "")) + "\n" + measurement.log[-1200:]
        return record

    def say(self, scenario: Scenario, tool: str, run: int) -> None:
        contender = scenario.contender(tool)
        record = next((item for item in contender.runs if item.get("run") == run), None)
        if record is None:
            return
        if not record.get("ok"):
            log(f"  FAILED: {str(record.get('error', ''))[-600:]}")
            return
        worker = record.get("worker_peak_rss")
        extra = f", worker {worker / 2**20:.0f} MiB" if worker else ""
        log(
            f"  {record['wall_s']:.1f}s, {record['mbps']:.0f} MB/s, "
            f"tree {record['peak_tree_rss'] / 2**20:.0f} MiB{extra}, cpu {record['cpu_s']:.1f}s"
        )

    # --- database ---
    def database_scenario(self) -> None:
        url = self.config.postgres_url
        facts = datagen.ensure_database(url, scale=self.config.db_scale, log=log)
        conninfo = datagen.database_url(url, datagen.DB_NAME)
        restore_conninfo = datagen.database_url(url, RESTORE_DB)
        dump_file = DATA_DIR / "db.dump"
        postmaster = postmaster_pid(url)
        self.service_pids = [postmaster] if postmaster else []
        log("writing the local pg_dump -Fc -Z0 file (pg_restore's input, untimed)")
        made = subprocess.run(
            [self.tools.pg_dump or "pg_dump", "-Fc", "-Z0", "-d", conninfo, "-f", str(dump_file)],
            capture_output=True,
            timeout=1800,
        )
        if made.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {made.stderr.decode(errors='replace')[-500:]}")
        dump_bytes = dump_file.stat().st_size
        info = {**facts, "dump_z0_bytes": dump_bytes, "throughput_basis": "pg_dump -Fc -Z0 bytes"}
        backup_tools = [t for t in ("pgdump-fc", "pgdump-z0-zstd", "backfleet") if self.wants(t)]
        restore_tools = [t for t in ("pg_restore", "backfleet") if self.wants(t)]
        labels = {
            "pgdump-fc": "pg_dump -Fc | aws s3 cp -",
            "pgdump-z0-zstd": "pg_dump -Fc -Z0 | zstd -1 | aws s3 cp -",
            "backfleet": f"Backfleet ({self.backfleet_store} store)",
            "pg_restore": "pg_restore from a local file",
        }
        size_gb = facts["database_bytes"] / 1e9
        backup = Scenario(
            id="db-backup",
            kind="db-backup",
            title=f"PostgreSQL backup, {size_gb:.2f} GB database ({dump_bytes / 1e9:.2f} GB dump)",
            input_bytes=dump_bytes,
            input=info,
            contenders=[
                Contender(tool, labels[tool], "backfleet" if tool == "backfleet" else "peer")
                for tool in backup_tools
            ],
        )
        restore = Scenario(
            id="db-restore",
            kind="db-restore",
            title=f"PostgreSQL restore into a fresh database ({size_gb:.2f} GB)",
            input_bytes=dump_bytes,
            input=info,
            contenders=[
                Contender(tool, labels[tool], "backfleet" if tool == "backfleet" else "peer")
                for tool in restore_tools
            ],
        )
        self.scenarios += [backup, restore]
        timeout = timeout_for(dump_bytes)
        assert self.server is not None
        try:
            for run in range(1, self.config.runs + 1):
                stored: Path | None = None
                bucket = f"backfleet-db-r{run}"
                for tool in rotated(backup_tools, run):
                    log(f"db run {run}/{self.config.runs}: backup by {labels[tool]}")
                    if tool == "backfleet":
                        stored = self.backfleet_database_backup(backup, run, bucket, timeout)
                    else:
                        self.peer_database_backup(backup, tool, run, conninfo, timeout)
                    self.save()
                    self.say(backup, tool, run)
                for tool in rotated(restore_tools, run):
                    log(f"db run {run}/{self.config.runs}: restore by {labels[tool]}")
                    fresh_database(url)
                    if tool == "pg_restore":
                        command = peers.pg_restore(self.tools, restore_conninfo, dump_file)
                        restore.contender(tool).command = command
                        gate = self.quiet()
                        reread([dump_file])
                        measurement = run_measured(
                            command,
                            env=peers.base_env(),
                            timeout=timeout,
                            log_path=LOGS / f"db-restore-pg_restore-r{run}.log",
                            watch_pid=self.server.pid,
                            service_pids=self.service_pids,
                        )
                        record = run_record(run, measurement, dump_bytes, "pg_restore")
                        record.update(gate)
                    elif stored is None:
                        continue
                    else:
                        record = self.backfleet_database_restore(
                            restore, run, bucket, stored, restore_conninfo, timeout
                        )
                    if record["ok"]:
                        record["verified"] = row_counts(restore_conninfo) == facts["rows"]
                        if not record["verified"]:
                            record["ok"] = False
                            record["error"] = "row counts differ from the source's"
                    restore.contender(tool).runs.append(record)
                    self.save()
                    self.say(restore, tool, run)
                self.clean_backfleet(bucket)
        finally:
            drop_database(url)
            dump_file.unlink(missing_ok=True)
            self.service_pids = []

    def peer_database_backup(
        self, scenario: Scenario, tool: str, run: int, conninfo: str, timeout: float
    ) -> None:
        assert self.server is not None
        bucket = f"{tool}-r{run}"
        key = "bench/db.dump" + (".zst" if tool == "pgdump-z0-zstd" else "")
        self.server.create_bucket(bucket)
        upload = peers.aws_cp(self.tools, self.server.endpoint, bucket, key, scenario.input_bytes)
        if tool == "pgdump-fc":
            command = f"{peers.pg_dump(self.tools, conninfo, uncompressed=False)} | {upload}"
        else:
            command = (
                f"{peers.pg_dump(self.tools, conninfo, uncompressed=True)} | "
                f"{peers.zstd_filter(self.tools)} | {upload}"
            )
        scenario.contender(tool).command = command
        gate = self.quiet()
        warm_database(self.config.postgres_url)
        measurement = run_measured(
            command,
            env=self.aws_env,
            timeout=timeout,
            log_path=LOGS / f"db-backup-{tool}-r{run}.log",
            watch_pid=self.server.pid,
            service_pids=self.service_pids,
        )
        record = run_record(run, measurement, scenario.input_bytes, "aws")
        record.update(gate)
        record["peak_pg_dump_rss"] = measurement.peak_rss_by_name.get("pg_dump", 0)
        if measurement.ok:
            record["stored_bytes"] = self.server.object_size(bucket, key)
        scenario.contender(tool).runs.append(record)
        self.server.remove_bucket(bucket)

    def backfleet_database_backup(
        self, scenario: Scenario, run: int, bucket: str, timeout: float
    ) -> Path | None:
        assert self.server is not None
        self.clean_backfleet(bucket)
        if self.backfleet_store == "s3":
            self.server.create_bucket(bucket)
        result = OUT_DIR / "runner" / f"db-backup-r{run}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        conninfo = datagen.database_url(self.config.postgres_url, datagen.DB_NAME)
        args = ["backup", "--store", self.backfleet_store, "--kind", "postgres"]
        args += ["--source", conninfo, "--key", f"bench/db-r{run}/bench.pgdump.zst"]
        args += ["--result", str(result)]
        scenario.contender("backfleet").command = "python -m bench.backfleet_runner " + " ".join(
            args
        )
        gate = self.quiet()
        warm_database(self.config.postgres_url)
        measurement = self.backfleet(
            args, bucket, LOGS / f"db-backup-backfleet-r{run}.log", timeout
        )
        record = self.runner_record(run, measurement, scenario.input_bytes, result)
        record.update(gate)
        record["stored_bytes"] = record.pop("artifact_bytes", 0)
        scenario.contender("backfleet").runs.append(record)
        return result if record["ok"] else None

    def backfleet_database_restore(
        self,
        scenario: Scenario,
        run: int,
        bucket: str,
        stored: Path,
        conninfo: str,
        timeout: float,
    ) -> dict[str, Any]:
        result = OUT_DIR / "runner" / f"db-restore-r{run}.json"
        args = ["restore", "--store", self.backfleet_store, "--kind", "postgres"]
        args += ["--target", conninfo, "--entry", str(stored), "--result", str(result)]
        scenario.contender("backfleet").command = "python -m bench.backfleet_runner " + " ".join(
            args
        )
        gate = self.quiet()
        reread(self.backfleet_stored_files(bucket))
        measurement = self.backfleet(
            args, bucket, LOGS / f"db-restore-backfleet-r{run}.log", timeout
        )
        record = self.runner_record(run, measurement, scenario.input_bytes, result)
        record.update(gate)
        return record


def size_tag(scenario: Scenario) -> str:
    return scenario.id.split("-")[1].lower()


# --- PostgreSQL helpers ---


def _admin(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def fresh_database(url: str) -> None:
    with _admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {RESTORE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {RESTORE_DB}")


def drop_database(url: str) -> None:
    with contextlib.suppress(Exception), _admin(url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {RESTORE_DB} WITH (FORCE)")


def row_counts(conninfo: str) -> dict[str, int]:
    import psycopg

    counts: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn:
        for table in ("customers", "orders", "documents"):
            try:
                row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                counts[table] = int(row[0]) if row else 0
            except psycopg.Error:
                conn.rollback()
                counts[table] = -1
    return counts


def postmaster_pid(url: str) -> int | None:
    """The local server's postmaster, so its CPU (and its backends') is not called noise."""
    try:
        with _admin(url) as conn:
            directory = conn.execute("SHOW data_directory").fetchone()[0]
        return int((Path(str(directory)) / "postmaster.pid").read_text().split()[0])
    except Exception:
        return None


def warm_database(url: str) -> None:
    """Bring the source database's files into the page cache before a timed dump."""
    with _admin(url) as conn:
        try:
            directory = conn.execute("SHOW data_directory").fetchone()[0]
            oid = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = %s", (datagen.DB_NAME,)
            ).fetchone()[0]
        except Exception:
            directory, oid = None, None
    base = Path(str(directory)) / "base" / str(oid) if directory else None
    if base is not None and os.access(base, os.R_OK):
        reread([base])
        return
    import psycopg  # a remote server: sequential scans read every page through its cache

    with psycopg.connect(datagen.database_url(url, datagen.DB_NAME)) as conn:
        for table in ("customers", "orders", "documents"):
            conn.execute(f"SELECT count(*) FROM {table}")


# --- facts about this machine ---


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, text=True)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    commit = _first_line(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_bytes": memory,
        "cpu": cpu,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "disk_free_bytes": shutil.disk_usage(DATA_DIR.parent).free,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def tool_versions(tools: peers.Tools) -> dict[str, str]:
    versions = {
        "tar": _first_line([tools.tar or "tar", "--version"]),
        "zstd": _first_line([tools.zstd or "zstd", "--version"]),
        "aws": _first_line([tools.aws or "aws", "--version"]),
        "rclone": _first_line([tools.rclone or "rclone", "version"]),
        "restic": _first_line([tools.restic or "restic", "version"]),
        "pg_dump": _first_line([tools.pg_dump or "pg_dump", "--version"]),
        "pg_restore": _first_line([tools.pg_restore or "pg_restore", "--version"]),
        "python": sys.version.split()[0],
    }
    probe = (
        "import zstandard, boto3, psycopg; "
        "print(f'zstandard {zstandard.__version__} (libzstd {zstandard.ZSTD_VERSION}), "
        "boto3 {boto3.__version__}, psycopg {psycopg.__version__}')"
    )
    versions["backfleet_libs"] = _first_line([str(PROJECT_PYTHON), "-c", probe])
    return versions


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks stop the server and clean up


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    config = Config.from_args(argv)
    log(
        f"sizes {[size_label(size) for size in config.sizes]}, runs {config.runs}, "
        f"scenarios {config.scenarios}, tools {config.tools}"
    )
    return Bench(config).run()


if __name__ == "__main__":
    sys.exit(main())
