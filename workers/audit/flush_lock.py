"""One flush at a time per namespace, across processes and hosts.

Two flushes of one namespace at once would both find the other's claimed batch
and redo it, and race to make the namespace's watermark row. The lock lives
where the catalog does, so it needs nothing else and dies with its holder:
- PostgreSQL: a session-level advisory lock on a connection of its own
  (released when the flush ends, or when its connection drops);
- SQLite: an flock on a file beside the database (one host by nature),
  released when the file is closed, or the process dies.
A second flush waits for the first, then ships what is left.
"""

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.audit.catalog import advisory_lock
from workers.catalog.db import database_file, get_engine

LOCK_SUFFIX = ".audit-flush.lock"


def lock_key(namespace: str) -> int:
    """A signed 64-bit advisory-lock key for the namespace (stable across processes)."""
    digest = hashlib.sha256(f"backfleet:audit-flush:{namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def flush_lock(database_url: str, namespace: str) -> Iterator[None]:
    engine = get_engine(database_url)
    if engine.dialect.name == "postgresql":
        with advisory_lock(engine, lock_key(namespace)):
            yield
        return
    database = database_file(database_url)
    if not database or database == ":memory:":
        yield  # one connection, one process: nothing to exclude
        return
    path = Path(database).with_name(f"{Path(database).name}.{namespace}{LOCK_SUFFIX}")
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
