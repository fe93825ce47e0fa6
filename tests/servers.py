"""Real Redis and PostgreSQL servers for the tests, bound to 127.0.0.1.

Each server is either given (TEST_REDIS_URL, TEST_POSTGRES_URL, a PostgreSQL
already answering on 127.0.0.1:5432) or started here, privately, on a free port
in a temporary directory, under a time bound. Only what was started here is
stopped, and an atexit hook stops it even if the session's teardown never runs.
"""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from workers.cli.embedded_redis import answers_ping, die_with_parent, free_port, redis_executable

START_TIMEOUT = 30.0
STOP_GRACE = 15.0
PRIVATE_POSTGRES_ENV = "BACKFLEET_TEST_PRIVATE_POSTGRES"


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    process: "subprocess.Popen[bytes]",
    log: Path,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll `ready` until true; fail with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}:\n{_tail(log)}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(process: "subprocess.Popen[bytes]", sig: int = signal.SIGTERM) -> None:
    """Send `sig`, then SIGKILL after a grace period; always reaps the process."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


# --- Redis ------------------------------------------------------------------------------


def redis_binary() -> str:
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return str(redis_executable())


class RedisServer:
    """A redis-server of the tests' own, 127.0.0.1 only; `persistent` keeps an append-only
    file (fsync on every write), as production does, so a restart keeps queued tasks;
    `unix_socket` also listens on `self.socket` (owner only), as a sidecar Redis may."""

    def __init__(self, persistent: bool = False, *, unix_socket: bool = False) -> None:
        self.persistent = persistent
        self.unix_socket = unix_socket
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = Path(tempfile.mkdtemp(prefix="backfleet-test-redis-"))
        self.log = self.directory / "redis.log"
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def start(self) -> None:
        argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port)]
        if self.persistent:
            argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--save", "", "--appendonly", "no"]
        argv += ["--protected-mode", "yes", "--maxmemory-policy", "noeviction"]
        if self.unix_socket:
            argv += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        argv += ["--daemonize", "no", "--dir", str(self.directory), "--logfile", str(self.log)]
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent()
        )
        wait_until(self.ping, what="redis-server", process=self.process, log=self.log)

    def ping(self) -> bool:
        return answers_ping(self.url)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (its data is gone unless `persistent`)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class ExternalRedis:
    """TEST_REDIS_URL: someone else's server, never restarted nor stopped here."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = urlsplit(url).port or 6379

    def restart(self) -> None:
        raise NotImplementedError("cannot restart the Redis named by TEST_REDIS_URL")

    def close(self) -> None:
        pass


class _Startable(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=_Startable)


def started(server: S) -> S:
    """Start a private server; if that fails, clean up what it left before raising."""
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def start_redis() -> RedisServer | ExternalRedis:
    if url := os.environ.get("TEST_REDIS_URL"):
        return ExternalRedis(url)
    return started(RedisServer())


# --- PostgreSQL -------------------------------------------------------------------------


class PostgresServer:
    """A PostgreSQL server reachable with a superuser URL; makes throw-away databases."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.private = False

    def url_for(self, database: str) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        host, port = info.get("host", "127.0.0.1"), info.get("port", 5432)
        return f"postgresql://{user}{password}@{host}:{port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def close(self) -> None:
        pass


def _is_superuser(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            result = row.fetchone()
            return bool(result and result[0])
    except psycopg.Error:
        return False


def postgres_bin_dir() -> Path:
    """The directory holding initdb and postgres: PATH, else Debian's newest version."""
    candidates = []
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=_version_of, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise FileNotFoundError("PostgreSQL server binaries not found: run scripts/test-deps.sh")


def _version_of(bin_dir: Path) -> int:
    name = bin_dir.parent.name
    return int(name) if name.isdigit() else 0


def _reachable_by_postgres_user(path: Path) -> bool:
    """Every ancestor searchable by others, so the `postgres` user can reach a child of it."""
    return all(os.stat(parent).st_mode & 0o001 for parent in [path, *path.parents])


class PrivatePostgres(PostgresServer):
    """A cluster of the tests' own: initdb in a temporary directory, a free port, fsync off.

    As root, initdb and postgres run as the `postgres` OS user (PostgreSQL refuses root).
    `initdb_args` and `settings` add to (or override) what it is made and started with:
    the WAL streaming tests want `--wal-segsize=1` (1 MiB segments fill quickly).
    `standby_of`: made by pg_basebackup -R from that running cluster, it starts as its
    streaming standby (a promotion then moves it to a new timeline).
    """

    def __init__(
        self,
        *,
        initdb_args: tuple[str, ...] = (),
        settings: dict[str, str] | None = None,
        standby_of: "PrivatePostgres | None" = None,
    ) -> None:
        self.initdb_args, self.extra_settings = initdb_args, dict(settings or {})
        self.standby_of = standby_of
        base = Path(tempfile.gettempdir())
        as_root = os.geteuid() == 0
        if as_root and not _reachable_by_postgres_user(base):
            base = Path("/tmp")
        self.directory = Path(tempfile.mkdtemp(prefix="backfleet-test-pg-", dir=base))
        self.port = free_port()
        super().__init__(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        self.private = True
        self.process: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if as_root else None
        self.log = self.directory / "postgres.log"
        atexit.register(self.close)

    def start(self) -> None:
        bin_dir = postgres_bin_dir()
        data, sockets = self.directory / "data", self.directory / "sockets"
        sockets.mkdir()
        if self.user:
            for path in (self.directory, sockets):
                shutil.chown(path, self.user, self.user)
        groups: list[str] | None = [] if self.user else None  # drop root's groups too
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
        initdb += ["-E", "UTF8", "--locale=C", "--no-sync", *self.initdb_args]
        if self.standby_of is not None:
            initdb = [str(bin_dir / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream"]
            initdb += ["-h", "127.0.0.1", "-p", str(self.standby_of.port), "-U", "postgres"]
            initdb += ["--no-sync", "--checkpoint=fast"]
        done = subprocess.run(
            initdb,
            capture_output=True,
            timeout=120,
            user=self.user,
            group=self.user,
            extra_groups=groups,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{initdb[0]} failed:\n{done.stderr.decode(errors='replace')}")
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(sockets),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **self.extra_settings,
        }
        argv = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
                user=self.user,
                group=self.user,
                extra_groups=groups,
            )
        wait_until(
            lambda: _is_superuser(self.admin_url),
            what="private PostgreSQL",
            process=self.process,
            log=self.log,
        )

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)  # SIGINT is PostgreSQL's fast shutdown
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres() -> PostgresServer:
    if url := os.environ.get("TEST_POSTGRES_URL"):
        return PostgresServer(url)
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if os.environ.get(PRIVATE_POSTGRES_ENV) != "1" and _is_superuser(local):
        return PostgresServer(local)
    return started(PrivatePostgres())
