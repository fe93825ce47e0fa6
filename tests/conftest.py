"""Session-wide real servers for the integration tests (see tests/servers.py).

- `redis_server`: a private redis-server (or TEST_REDIS_URL), with `.url`, `.port`, `restart()`.
- `postgres_server`: TEST_POSTGRES_URL, else the PostgreSQL on 127.0.0.1:5432, else a
  private cluster; `.admin_url`, `create_database()`, `drop_database()`.
  BACKFLEET_TEST_PRIVATE_POSTGRES=1 forces the private cluster.
- `pg_database`: a throw-away database URL, dropped after the test.
"""

import uuid
from collections.abc import Iterator

import pytest

from tests.servers import ExternalRedis, PostgresServer, RedisServer, start_postgres, start_redis

# Fixtures of the other servers live in their own modules.
pytest_plugins = ["tests.plugins.object_stores", "tests.plugins.mariadb", "tests.plugins.wal"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | ExternalRedis]:
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
