"""A namespace `app` with a directory, an SQLite database (and optionally PostgreSQL),
backed up once and then changed, for the restore lock and crash tests.

The environment is set the way a worker reads it (tasks.restore.run_restore
runs in-process, eagerly, or in a child process), on a real Redis for the lock.
"""

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis

from workers.catalog import queries
from workers.catalog.db import session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import UserEvent
from workers.fleet import current_fleet, reset_fleet
from workers.operations.backup import run_backup
from workers.operations.locks import forget_clients

# The staging and set-aside names a restore uses beside its target, and in the work dir.
LEFTOVER_MARK = ".backfleet-"


@dataclass
class RestoreCase:
    catalog: str
    env: dict[str, str]
    files: Path  # the directory service's target
    database: Path  # the SQLite service's target
    work: Path  # BACKFLEET_WORK_DIR
    timestamp: str  # the backup, taken before the data changed
    backed_up: dict[str, str]  # the directory as backed up (path -> SHA-256)
    changed: dict[str, str]  # the directory now
    redis: redis.Redis
    postgres: str | None = None


def make_case(
    tmp_path: Path,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    postgres: str | None = None,
) -> RestoreCase:
    data = tmp_path / "data"
    files, database, work = data / "files", data / "app.db", tmp_path / "work"
    (files / "sub").mkdir(parents=True)
    work.mkdir()
    (files / "a.txt").write_text("alpha\n")
    (files / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, label TEXT)")
        db.executemany("INSERT INTO nodes (label) VALUES (?)", [("n" * 100,)] * 3000)
    services = (
        f'namespace = "app"\n[services.files]\nkind = "directory"\npath = "{files}"\n'
        f'[services.db]\nkind = "sqlite"\npath = "{database}"\n'
    )
    if postgres is not None:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute("CREATE TABLE things (id int PRIMARY KEY, label text)")
            conn.execute(
                "INSERT INTO things SELECT g, 'thing ' || g FROM generate_series(1, 500) g"
            )
        services += f'[services.pg]\nkind = "postgres"\nurl = "{postgres}"\n'
    config = tmp_path / "backfleet.toml"
    config.write_text(services)
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(catalog)
    env = {
        "BROKER_URL": redis_url,
        "DATABASE_URL": catalog,
        "BACKFLEET_CONFIG": str(config),
        "BACKFLEET_WORK_DIR": str(work),
        "OBJECT_STORE_LOCATION_LOCAL": str(tmp_path / "store"),
        "BACKUP_LOCK_TTL": "3",
        "TASK_MAX_REDELIVERIES": "2",
        "ENABLE_USER_EVENTS": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("REDIS_URL", "BACKFLEET_NAMESPACE", "RESTORE_DIRECT_WRITES"):
        monkeypatch.delenv(name, raising=False)
    reset_fleet()
    forget_clients()

    fleet = current_fleet()
    with session_scope(catalog) as session:
        timestamp = queries.create_backup(
            session,
            namespace="app",
            services=sorted(fleet.config.services_of("app")),
            only_config=False,
            trigger="test",
        ).timestamp
    outcome = run_backup(fleet, namespace="app", timestamp=timestamp)
    assert outcome.status == "Success", outcome.error
    backed_up = tree(files)

    # Changed since: a restore that committed would show.
    (files / "a.txt").write_text("changed after the backup\n")
    (files / "new.txt").write_text("new\n")
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM nodes WHERE id > 1000")
    if postgres is not None:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute("DELETE FROM things WHERE id > 100")
    return RestoreCase(
        catalog=catalog,
        env=env,
        files=files,
        database=database,
        work=work,
        timestamp=timestamp,
        backed_up=backed_up,
        changed=tree(files),
        redis=redis.Redis.from_url(redis_url),
        postgres=postgres,
    )


def new_restore(case: RestoreCase, services: list[str]) -> int:
    with session_scope(case.catalog) as session:
        return queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp=case.timestamp,
            services=services,
            skipped=[],
            backup_url="test",
        ).id


def tree(path: Path) -> dict[str, str]:
    """Every regular file below `path`, by relative name, with its SHA-256."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def sqlite_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM nodes").fetchone()[0])


def pg_rows(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM things").fetchone()
        assert row is not None
        return int(row[0])


def leftovers(case: RestoreCase) -> list[str]:
    """Staging copies, trees set aside, staged files: what a restore must not leave."""
    places = (case.files.parent, case.work)
    return sorted(name for place in places for name in os.listdir(place) if LEFTOVER_MARK in name)


def restore_events(case: RestoreCase) -> list[UserEvent]:
    with session_scope(case.catalog) as session:
        events = session.query(UserEvent).all()
        found = [e for e in events if "Restore" in (e.name_hints or [])]
        session.expunge_all()
        return found
