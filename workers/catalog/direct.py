"""The catalog through its DB-API driver, without SQLAlchemy: the connection that
`backfleet backup` writes its request and reads its progress with (direct_rows.py).

Importing SQLAlchemy and declaring the models costs a new process ~0.35 CPU-s, which a
request that writes one row and then waits for a worker paid before the worker could
start, and then beside it on the same cores. The usual URLs (`sqlite:///path`,
`postgresql://…`, `postgresql+psycopg://…`) are opened here as db.py's engine would open
them (the same SQLite file mode, pragmas and timeout; psycopg with the same connect
timeout); any other form the settings accept goes through db.py's engine, so every URL
that works elsewhere works here. The statements themselves are in direct_rows.py.
"""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from workers.catalog.drivers import (
    CONNECT_TIMEOUT_SECONDS,
    SQLITE_TIMEOUT_SECONDS,
    create_private_sqlite,
    sqlite_pragmas,
)

# What SQLAlchemy calls the driver errors it wraps; db.py and cli/exits.py act on these names.
_WRAPPED = ("OperationalError", "InterfaceError", "ProgrammingError")


class CatalogDriverError(Exception):
    """A driver's error on the catalog, named as SQLAlchemy names the one it would raise
    (`kind`: OperationalError, InterfaceError or ProgrammingError), so the CLI tells an
    outage from a fault in the settings as it does for SQLAlchemy's (cli/exits.py). Only
    errors of the catalog's own connection become one: a service's SQLite file that fails
    in the same process keeps its own error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Execute(Protocol):
    """Runs one statement of a transaction; returns the driver's cursor."""

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


class DirectCatalog:
    """One DB-API connection to the catalog, opened on first use; `transaction()` runs
    statements written with `?` placeholders, whatever the driver's style."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite:") else "postgresql"
        self._connection: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._placeholder = "?"

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        """An `execute(sql, params) -> cursor` whose statements commit together at the end
        (or roll back on any error); driver errors come out as CatalogDriverError."""
        with self._wrapped():
            connection = self._connect()
            cursor = connection.cursor()
            if self.dialect == "sqlite":
                cursor.execute("BEGIN")  # explicit: the connection is in autocommit mode

            def execute(sql: str, params: Sequence[Any] = ()) -> Any:
                cursor.execute(sql.replace("?", self._placeholder), tuple(params))
                return cursor

            try:
                yield execute
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                cursor.close()

    def is_integrity_error(self, exc: BaseException) -> bool:
        """A unique constraint (or another integrity rule) refused the statement."""
        return type(exc).__name__ == "IntegrityError" or any(
            klass.__name__ == "IntegrityError" for klass in type(exc).__mro__
        )

    def datetime_param(self, moment: datetime) -> object:
        """How db.py's UTCDateTime stores a moment: naive UTC text on SQLite (SQLAlchemy's
        format), the aware datetime on PostgreSQL."""
        moment = moment.astimezone(UTC)
        if self.dialect == "sqlite":
            return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
        return moment

    def json_placeholder(self) -> str:
        """A JSON column's value, bound as compact_json text."""
        return "?" if self.dialect == "sqlite" else "CAST(? AS JSON)"

    def _connect(self) -> Any:
        if self._connection is not None and self.dialect == "postgresql":
            self._ping()  # as db.py's pool_pre_ping: a server restarted meanwhile is reconnected
        if self._connection is None:
            self._connection = self._open()
        return self._connection

    def _ping(self) -> None:
        try:
            cursor = self._connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            self._connection.rollback()
        except Exception:
            try:
                self.close()
            except Exception:
                self._connection = None

    def _open(self) -> Any:
        sqlite_file = _plain_sqlite_file(self.url)
        if sqlite_file is not None:
            create_private_sqlite(Path(sqlite_file))
            connection = sqlite3.connect(
                sqlite_file, timeout=SQLITE_TIMEOUT_SECONDS, isolation_level=None
            )
            sqlite_pragmas(connection)
            self._errors, self._placeholder = (sqlite3.Error,), "?"
            return connection
        conninfo = _plain_postgres_conninfo(self.url)
        if conninfo is not None:
            import psycopg  # only a PostgreSQL catalog pays for it

            self._errors, self._placeholder = (psycopg.Error,), "%s"
            return psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        return self._through_sqlalchemy()

    def _through_sqlalchemy(self) -> Any:
        """Any other URL the settings accept: a raw connection of db.py's engine."""
        from workers.catalog.db import get_engine

        raw = get_engine(self.url).raw_connection()
        driver = raw.driver_connection
        module = __import__(type(driver).__module__.split(".")[0])
        style = getattr(module, "paramstyle", "qmark")
        self._placeholder = "?" if style == "qmark" else "%s"
        self._errors = (module.Error,) if hasattr(module, "Error") else ()
        return raw

    @contextmanager
    def _wrapped(self) -> Iterator[None]:
        try:
            yield
        except CatalogDriverError:
            raise
        except Exception as exc:
            if self.is_integrity_error(exc) or not self._driver_error(exc):
                raise
            kind = next((k.__name__ for k in type(exc).__mro__ if k.__name__ in _WRAPPED), None)
            raise CatalogDriverError(kind or "OperationalError", str(exc)) from exc

    def _driver_error(self, exc: Exception) -> bool:
        if self._errors:
            return isinstance(exc, self._errors)
        # The connection failed before the driver was known: judge by the driver's module.
        return type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg")


def _plain_sqlite_file(url: str) -> str | None:
    """The file of `sqlite:///path` (what SQLAlchemy's URL parser makes of it), or None
    for a form opened through SQLAlchemy (a query string, memory, no file)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    database = unquote(url[len(prefix) :])
    return None if database in ("", ":memory:") else database


def _plain_postgres_conninfo(url: str) -> str | None:
    """`postgresql://…` as libpq reads it, for the schemes db.py sends to psycopg."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        return None
    return f"postgresql://{rest}"
