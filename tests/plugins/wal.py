"""A private PostgreSQL cluster for the WAL streaming tests (`wal_postgres`, session):
1 MiB WAL segments (`initdb --wal-segsize=1`, so a test fills several in a moment),
wal_level=replica, replication allowed from 127.0.0.1 (initdb's trust lines), no
limit on what a slot keeps unless a test sets one (ALTER SYSTEM). Always private: the
tests drop slots and switch segments."""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import PrivatePostgres, started
from workers.catalog.db import dispose_engines

if TYPE_CHECKING:
    from tests.wal_fleet import WalFleet

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


@pytest.fixture
def wal_fleet(
    tmp_path: Path,
    redis_server: Any,
    wal_postgres: PrivatePostgres,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator["WalFleet"]:
    """A fleet streaming one `pitr` service of `wal_postgres` (tests/wal_fleet.py)."""
    from tests.wal_fleet import make_fleet

    fleet = make_fleet(tmp_path, redis_server, wal_postgres, monkeypatch)
    try:
        yield fleet
    finally:
        fleet.close()
        dispose_engines()
