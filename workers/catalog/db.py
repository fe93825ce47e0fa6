"""Engine and sessions. The engine is made on first use in each process (after fork)."""

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine as Engine  # re-exported: callers type their engines with it
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session as Session  # re-exported: callers type their sessions
from sqlalchemy.orm import sessionmaker

from workers.catalog.drivers import (
    CONNECT_TIMEOUT_SECONDS,
    SQLITE_TIMEOUT_SECONDS,
    create_private_sqlite,
    sqlite_pragmas,
)
from workers.catalog.drivers import compact_json as compact_json  # re-exported: JSON columns

log = logging.getLogger(__name__)
T = TypeVar("T")
_engines: dict[tuple[int, str], Engine] = {}
# What a catalog that is down or restarting raises (SQLite's "locked" too).
CATALOG_OUTAGE = (OperationalError, InterfaceError)


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs; the driver is Backfleet's business."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def database_file(url: str) -> str | None:
    """The `database` part of the URL: a SQLite URL's file (None or ":memory:" for none)."""
    return make_url(normalize_url(url)).database


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    sqlite_pragmas(dbapi_connection)


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            create_private_sqlite(Path(parsed.database))
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_TIMEOUT_SECONDS}, json_serializer=compact_json
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A bounded connect, so /readyz and requests fail fast when the catalog is down.
    return create_engine(
        url,
        pool_pre_ping=True,
        json_serializer=compact_json,
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )


def get_engine(url: str) -> Engine:
    """One engine per process and URL; a forked child makes its own."""
    key = (os.getpid(), url)
    if key not in _engines:
        _engines[key] = make_engine(url)
    return _engines[key]


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(session: Session) -> None:
    """One round trip to the catalog (readiness): raises when it does not answer."""
    session.execute(text("SELECT 1"))


def dispose_engines() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def retry_catalog(write: Callable[[], T], *, what: str, patience: float) -> T:
    """Run `write` (one whole transaction) until the catalog takes it, for up to `patience` s.

    A backup that runs for hours must ride out a catalog restart: its parts are
    safe in the store, and only the record of them waits.
    """
    deadline, delay = time.monotonic() + patience, 0.5
    while True:
        try:
            return write()
        except CATALOG_OUTAGE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "catalog unreachable while %s (%s); retrying in %.1f s",
                what,
                type(exc).__name__,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def write_catalog(url: str, change: Callable[[Session], T], *, what: str, patience: float) -> T:
    """`change` in its own transaction, retried through a catalog outage (see retry_catalog)."""

    def attempt() -> T:
        with session_scope(url) as session:
            return change(session)

    return retry_catalog(attempt, what=what, patience=patience)
