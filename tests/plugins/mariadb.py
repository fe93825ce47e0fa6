"""Fixtures for mariadb tests (see tests/conftest.py).

- `mariadb_server` (session): the MariaDB answering as root with an empty password on
  127.0.0.1:3306 (TEST_MARIADB_PORT picks another port), else a private `mariadbd` in a
  temporary directory on a free port, started under a time bound and stopped at the end.
  BACKFLEET_TEST_PRIVATE_MARIADB=1 forces the private server.
- `mariadb_database`: a throw-away database (utf8mb4), dropped after the test.

SQL runs through the `mariadb` (or `mysql`) client: the tests need no Python driver.
"""

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import START_TIMEOUT, started, stop_process, wait_until
from workers.cli.embedded_redis import die_with_parent, free_port

PRIVATE_MARIADB_ENV = "BACKFLEET_TEST_PRIVATE_MARIADB"
PORT_ENV = "TEST_MARIADB_PORT"
HOST = "127.0.0.1"
SQL_TIMEOUT = 60.0


def find_tool(*names: str) -> str | None:
    """The first of `names` on PATH or in /usr/sbin, /usr/bin (mariadbd lives in sbin)."""
    for name in names:
        for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
    return None


def client_tool() -> str:
    tool = find_tool("mariadb", "mysql")
    if tool is None:
        pytest.skip("the MariaDB client is not installed: run scripts/test-deps.sh")
    return tool


def dump_tool() -> str:
    tool = find_tool("mariadb-dump", "mysqldump")
    if tool is None:
        pytest.skip("mariadb-dump/mysqldump is not installed: run scripts/test-deps.sh")
    return tool


class MariaDBServer:
    """A MariaDB server where root (empty password) may connect over TCP to HOST."""

    def __init__(self, port: int) -> None:
        self.host, self.port, self.user = HOST, port, "root"
        self.private = False

    def client_args(self) -> list[str]:
        """Connection options for the mariadb/mysql and mariadb-dump/mysqldump tools."""
        return [f"-h{self.host}", f"-P{self.port}", f"-u{self.user}", "--protocol=TCP"]

    def sql(self, statements: str, database: str | None = None) -> str:
        """Run statements; return the output as tab-separated rows without a header."""
        argv = [client_tool(), *self.client_args(), "--default-character-set=utf8mb4"]
        argv += ["--batch", "--skip-column-names", *([database] if database else [])]
        done = subprocess.run(
            argv, input=statements.encode(), capture_output=True, timeout=SQL_TIMEOUT
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout.decode()

    def answers(self) -> bool:
        try:
            self.sql("SELECT 1")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def create_database(self, name: str | None = None) -> str:
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`")

    def close(self) -> None:
        pass


class PrivateMariaDB(MariaDBServer):
    """A server of the tests' own: mariadb-install-db in a temporary directory, a free port.

    As root, both run with --user=root (mariadbd refuses root otherwise), so the
    temporary directory needs no hand-over to the `mysql` user.
    """

    def __init__(self) -> None:
        super().__init__(free_port())
        self.private = True
        self.directory = Path(tempfile.mkdtemp(prefix="backfleet-test-mariadb-"))
        self.log = self.directory / "mariadbd.log"
        self.process: subprocess.Popen[bytes] | None = None
        atexit.register(self.close)

    def start(self) -> None:
        server = find_tool("mariadbd", "mysqld")
        installer = find_tool("mariadb-install-db", "mysql_install_db")
        if server is None or installer is None:
            raise FileNotFoundError("MariaDB server not found: run scripts/test-deps.sh")
        data = self.directory / "data"
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        install = [installer, "--no-defaults", f"--datadir={data}", "--skip-test-db"]
        install += ["--auth-root-authentication-method=normal", *as_root]
        done = subprocess.run(install, capture_output=True, timeout=120)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"mariadb-install-db failed:\n{output[-4000:]}")
        argv = [server, "--no-defaults", f"--datadir={data}", f"--port={self.port}"]
        argv += [f"--bind-address={self.host}", f"--socket={self.directory / 'mariadbd.sock'}"]
        argv += [f"--pid-file={self.directory / 'mariadbd.pid'}", f"--log-error={self.log}"]
        argv += ["--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0"]
        argv += ["--skip-log-bin", *as_root]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )
        wait_until(
            self.answers,
            what="private mariadbd",
            process=self.process,
            log=self.log,
            timeout=START_TIMEOUT * 2,
        )

    def close(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGTERM)  # SIGTERM is mariadbd's clean shutdown
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def start_mariadb() -> MariaDBServer:
    client_tool()
    if os.environ.get(PRIVATE_MARIADB_ENV) != "1":
        existing = MariaDBServer(int(os.environ.get(PORT_ENV, "3306")))
        if existing.answers():
            return existing
    return started(PrivateMariaDB())


@dataclass(frozen=True)
class MariaDBDatabase:
    server: MariaDBServer
    name: str

    def sql(self, statements: str) -> str:
        return self.server.sql(statements, self.name)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    server = start_mariadb()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mariadb_database(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabase]:
    name = mariadb_server.create_database()
    try:
        yield MariaDBDatabase(mariadb_server, name)
    finally:
        mariadb_server.drop_database(name)


# The MariaDB drill scripts of docs/concepts/verification-and-drills.md (section "Drills"),
# with this server's client options.
COUNTS_SCRIPT = """#!/bin/sh
# A count_command: "table rows" for every table of database $1, one per line.
set -eu
exec {client} --batch --skip-column-names "$1" <<'SQL'
SET SESSION group_concat_max_len = 1048576;
SELECT GROUP_CONCAT(CONCAT('SELECT ', QUOTE(table_name), ', COUNT(*) FROM `', table_name, '`')
                    ORDER BY table_name SEPARATOR ' UNION ALL ')
  INTO @counts FROM information_schema.tables
  WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE';
PREPARE counts FROM @counts;
EXECUTE counts;
SQL
"""
DRILL_SCRIPT = """#!/bin/sh
# A test_restore_command: the dump on stdin into a scratch database named $BACKFLEET_SCRATCH,
# its row counts printed, the scratch dropped whatever happens.
set -eu
scratch="$BACKFLEET_SCRATCH"
sql() {{ {client} "$@"; }}
sql -e "DROP DATABASE IF EXISTS \\`$scratch\\`; CREATE DATABASE \\`$scratch\\`"
trap 'sql -e "DROP DATABASE IF EXISTS \\`$scratch\\`"' EXIT
# A --databases dump drops, creates and uses its own database: drop those lines and point
# every USE at the scratch one, so no statement reaches the live database.
sed -e '/^\\/\\*!40000 DROP DATABASE /d' -e '/^CREATE DATABASE /d' \\
    -e "s/^USE \\`[^\\`]*\\`;\\$/USE \\`$scratch\\`;/" | sql --one-database "$scratch"{tamper}
"$(dirname "$0")/mariadb-counts.sh" "$scratch"
"""


def drill_scripts(
    server: MariaDBServer, folder: Path, database: str, *, tamper: str = ""
) -> tuple[list[str], list[str]]:
    """(count_command, test_restore_command) of a MariaDB command service backing up
    `database`; `tamper` is SQL run on the scratch before it is counted."""
    client = " ".join([client_tool(), *server.client_args()])
    folder.mkdir(parents=True, exist_ok=True)
    counts, drill = folder / "mariadb-counts.sh", folder / "mariadb-drill.sh"
    counts.write_text(COUNTS_SCRIPT.format(client=client))
    extra = f'\nsql "$scratch" -e "{tamper}"' if tamper else ""
    drill.write_text(DRILL_SCRIPT.format(client=client, tamper=extra))
    for script in (counts, drill):
        script.chmod(0o755)
    return [str(counts), database], [str(drill)]
