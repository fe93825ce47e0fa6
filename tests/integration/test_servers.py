"""The server fixtures themselves: real Redis and PostgreSQL, and the private-cluster path."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
import redis

from tests.servers import PRIVATE_POSTGRES_ENV, ExternalRedis, PostgresServer, RedisServer

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_redis_ping_and_restart(redis_server: RedisServer | ExternalRedis) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        assert client.ping()
        client.set("backfleet-test", "before")
        if isinstance(redis_server, ExternalRedis):
            pytest.skip("TEST_REDIS_URL names a Redis these tests may not restart")
        redis_server.restart()
        assert client.ping()  # the client reconnects to the same port
        assert client.get("backfleet-test") is None  # nothing persists across a restart
    finally:
        client.close()


def _database_exists(server: PostgresServer, name: str) -> bool:
    with psycopg.connect(server.admin_url, connect_timeout=10) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None


def test_postgres_roundtrip(postgres_server: PostgresServer) -> None:
    if os.environ.get(PRIVATE_POSTGRES_ENV) == "1":
        assert postgres_server.private
    url = postgres_server.create_database("test_roundtrip_" + os.urandom(4).hex())
    name = url.rsplit("/", 1)[1]
    assert url.startswith("postgresql://") and "@127.0.0.1:" in url
    with psycopg.connect(url, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, label text)")
        conn.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
    idle = psycopg.connect(url, connect_timeout=10)  # drop_database wins over open sessions
    try:
        postgres_server.drop_database(name)
    finally:
        idle.close()
    assert not _database_exists(postgres_server, name)


def test_pg_database_is_a_fresh_database(pg_database: str) -> None:
    with psycopg.connect(pg_database, connect_timeout=10) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")


@pytest.mark.slow
def test_private_postgres_cluster() -> None:
    """Force the private-cluster path in a child pytest, even though 5432 may answer."""
    with tempfile.TemporaryDirectory(prefix="backfleet-test-tmp-", dir="/tmp") as scratch:
        os.chmod(scratch, 0o755)  # the `postgres` user must reach the cluster directory
        env = {**os.environ, PRIVATE_POSTGRES_ENV: "1", "TMPDIR": scratch}
        env.pop("TEST_POSTGRES_URL", None)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"{Path(__file__).relative_to(REPO)}::test_postgres_roundtrip",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "1 passed" in output, output
        leftovers = [entry.name for entry in Path(scratch).glob("backfleet-test-pg-*")]
        assert leftovers == [], f"private cluster directory left behind: {leftovers}"
        assert not _processes_mentioning(scratch), "private PostgreSQL still running"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found
