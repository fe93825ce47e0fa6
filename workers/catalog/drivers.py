"""What a connection to the catalog is, however it is opened (db.py's engine, or
direct.py's driver without SQLAlchemy): a private SQLite file, its pragmas, the timeouts,
the JSON columns' form."""

import json
import os
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL's
SQLITE_TIMEOUT_SECONDS = 30


def compact_json(value: object) -> str:
    """JSON columns are stored without spaces (user-event lines are built from them in SQL)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def create_private_sqlite(database: Path) -> None:
    """A new SQLite catalog (and a new folder for it) readable by this user only.

    SQLite gives its -wal and -shm files the database file's mode.
    """
    if database.exists():
        return
    if not database.parent.is_dir():
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:  # another process made it first
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def sqlite_pragmas(connection: Any) -> None:
    """Every catalog connection to SQLite: WAL so readers never block the worker's writes."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
