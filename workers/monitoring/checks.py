"""`backfleet check`: every piece the fleet needs, tried for real, each with a clear verdict."""

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from workers.catalog.db import get_engine
from workers.catalog.migrate import alembic_config
from workers.errors import ConfigError, reason_of
from workers.fleet import Fleet
from workers.monitoring.redis_checks import eviction_problem
from workers.monitoring.redis_client import CHECK, redis_client
from workers.redact import redact
from workers.services_config import ServiceSpec

PROBE_PREFIX = ".backfleet-probe/"


@dataclass(frozen=True)
class Verdict:
    name: str
    ok: bool
    detail: str


def run_checks(fleet: Fleet) -> Iterator[Verdict]:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("catalog", lambda: check_catalog(fleet)),
        ("broker", lambda: check_broker(fleet.settings.broker_url)),
        ("store", lambda: check_store(fleet)),
    ]
    for namespace, services in sorted(fleet.config.namespaces.items()):
        for name, spec in sorted(services.items()):
            checks.append((f"{namespace}/{name}", lambda spec=spec: check_source(spec)))  # type: ignore[misc]
    for name, check in checks:
        try:
            yield Verdict(name, True, check())
        except Exception as exc:
            reason = reason_of(exc)
            yield Verdict(name, False, redact(reason, fleet.secrets()))


def check_catalog(fleet: Fleet) -> str:
    url = fleet.settings.database_url
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with get_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise ConfigError(f"catalog is at revision {current}, not {head}: run `backfleet migrate`")
    return f"reachable, at revision {head}"


def check_broker(url: str) -> str:
    client = redis_client(url, CHECK)
    try:
        client.ping()
    finally:
        client.close()
    if problem := eviction_problem(url):
        raise ConfigError(problem)
    return "reachable, maxmemory-policy noeviction"


def check_store(fleet: Fleet) -> str:
    store = fleet.store
    store.check()
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    store.put_object(key, b"backfleet probe")
    try:
        if not store.exists(key):
            raise ConfigError("a probe object was written but cannot be found again")
    finally:
        store.delete(key)
    return f"{store.kind} store writable (a probe object was written and deleted)"


def check_source(spec: ServiceSpec) -> str:
    if spec.kind == "postgres":
        # Imported only when a PostgreSQL service is checked (psycopg's start-up cost);
        # sources/ sits below this module, so the import closes no cycle.
        from workers.sources.postgres import PostgresSource

        assert spec.url is not None
        for tool in ("pg_dump", "pg_restore", "psql"):
            if shutil.which(tool) is None:
                raise ConfigError(f"{tool} is not installed")
        source = PostgresSource(spec.url, password_env=spec.password_env, env=spec.env or ())
        with source.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'} reachable"
    if spec.kind == "sqlite":
        assert spec.path is not None
        if not spec.path.is_file():
            raise ConfigError(f"{spec.path} does not exist")
        with sqlite3.connect(f"file:{spec.path}?mode=ro", uri=True) as db:
            tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
        return f"SQLite database readable ({tables[0]} tables)"
    if spec.kind == "directory":
        assert spec.path is not None
        if not spec.path.is_dir():
            raise ConfigError(f"{spec.path} is not a directory")
        if not os.access(spec.path, os.R_OK | os.X_OK):
            raise ConfigError(f"{spec.path} is not readable")
        return "directory readable"
    commands = [getattr(spec, "dump_command", None), getattr(spec, "restore_command", None)]
    missing = [argv[0] for argv in commands if argv and shutil.which(argv[0]) is None]
    if missing:
        raise ConfigError(f"not installed: {', '.join(missing)}")
    return "commands found"
