"""A private PostgreSQL cluster for the WAL streaming tests (`wal_postgres`, session):
1 MiB WAL segments (`initdb --wal-segsize=1`, so a test fills several in a moment),
wal_level=replica, replication allowed from 127.0.0.1 (initdb's trust lines), no
limit on what a slot keeps unless a test sets one (ALTER SYSTEM). Always private: the
tests drop slots and switch segments."""

from collections.abc import Iterator

import pytest

from tests.servers import PrivatePostgres, started

WAL_SEGMENT_SIZE = 1024 * 1024
WAL_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "20",
    "max_replication_slots": "20",
    "wal_keep_size": "0",
    "min_wal_size": "2MB",
    "max_wal_size": "64MB",
    "checkpoint_timeout": "1h",
}


@pytest.fixture(scope="session")
def wal_postgres() -> Iterator[PrivatePostgres]:
    server = started(PrivatePostgres(initdb_args=("--wal-segsize=1",), settings=WAL_SETTINGS))
    try:
        yield server
    finally:
        server.close()
