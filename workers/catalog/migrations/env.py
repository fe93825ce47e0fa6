"""Alembic environment: migrates the catalog named by the `sqlalchemy.url` option."""

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from alembic import context
from sqlalchemy import Connection

from workers.catalog.db import make_engine
from workers.catalog.models import Base
from workers.errors import PermanentError

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by workers.catalog.migrate"
    engine = make_engine(url)
    try:
        with engine.connect() as connection, sqlite_foreign_keys_off(connection):
            context.configure(
                connection=connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, migrate with foreign keys off, then check them; elsewhere do nothing.

    To drop a column SQLite's batch mode copies the table and drops the old one;
    with foreign keys on, that DROP deletes every row first, and ON DELETE CASCADE
    takes each backup's artifacts (and their parts) with it. The setting cannot
    change inside a transaction, so it is switched before the migrations begin
    one, and put back afterwards.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    was_on = bool(connection.exec_driver_sql("PRAGMA foreign_keys").scalar())
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()  # ends SQLAlchemy's own block: SQLite opened no transaction for these
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise PermanentError("could not turn SQLite's foreign keys off to migrate the catalog")
    connection.commit()
    try:
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        connection.commit()
        if broken:
            raise PermanentError(_describe(broken))
    except BaseException:
        connection.rollback()
        raise
    finally:
        if was_on:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def _describe(broken: Sequence[Sequence[Any]]) -> str:
    """PRAGMA foreign_key_check's rows (table, rowid, parent, fkid), counted per table."""
    counts = Counter((str(row[0]), str(row[2])) for row in broken)
    found = ", ".join(
        f"{count} in {table} (to {parent})" for (table, parent), count in sorted(counts.items())
    )
    return (
        f"after migrating, the catalog has rows whose foreign key names a missing row: "
        f"{found}. The migration was applied; check those rows (PRAGMA foreign_key_check) "
        "or restore the catalog file from a copy taken before it"
    )


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
