"""The catalog's queries and migrations on SQLite and on a real PostgreSQL."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from workers.catalog import queries
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import alembic_config, upgrade_catalog
from workers.catalog.models import (
    FAILED,
    PENDING,
    SUCCESS,
    HookRun,
    UploadPart,
    Verification,
)
from workers.errors import ConflictError, PermanentError

pytestmark = pytest.mark.integration
MOMENT = datetime(2023, 2, 2, 17, 3, 15, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/catalog.db"
    else:
        url = request.getfixturevalue("pg_database")
    upgrade_catalog(url)
    yield url
    dispose_engines()


def new_backup(url: str, namespace: str = "app", **extra: object) -> str:
    with session_scope(url) as session:
        backup = queries.create_backup(
            session,
            namespace=namespace,
            services=["db"],
            only_config=False,
            trigger="api",
            moment=MOMENT,
            **extra,  # type: ignore[arg-type]
        )
        return backup.timestamp


def finish(url: str, namespace: str, timestamp: str, status: str = SUCCESS) -> None:
    with session_scope(url) as session:
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        assert row is not None
        row.status = status


def test_one_active_backup_per_namespace(catalog_url: str) -> None:
    first = new_backup(catalog_url)
    assert first == "2023-02-02t17-03-15"
    with pytest.raises(ConflictError) as caught:
        new_backup(catalog_url)
    assert caught.value.timestamp == first
    assert new_backup(catalog_url, namespace="other") == first  # other namespaces are free


def test_a_taken_second_moves_to_the_next_free_one(catalog_url: str) -> None:
    first = new_backup(catalog_url)
    finish(catalog_url, "app", first)
    second = new_backup(catalog_url)
    assert second == "2023-02-02t17-03-16"
    finish(catalog_url, "app", second, FAILED)
    with session_scope(catalog_url) as session:
        latest = queries.latest_backup(session, namespace="app")
        assert latest is not None and (latest.timestamp, latest.status) == (second, FAILED)
        assert queries.latest_backup(session, namespace="none") is None


def test_a_scheduled_task_finds_its_own_row_again(catalog_url: str) -> None:
    stamp = new_backup(catalog_url, task_id="task-1")
    with session_scope(catalog_url) as session:
        again = queries.backup_by_task(session, task_id="task-1")
        assert again is not None and again.timestamp == stamp and again.status == PENDING


def test_artifact_rows_are_not_duplicated(catalog_url: str) -> None:
    stamp = new_backup(catalog_url)
    ids = []
    for _ in range(2):
        with session_scope(catalog_url) as session:
            backup = queries.get_backup(session, namespace="app", timestamp=stamp)
            assert backup is not None
            artifact = queries.upsert_artifact(
                session,
                backup=backup,
                service="db",
                kind="sqlite",
                key="k",
                fmt="sqlite",
                compression="zstd",
            )
            artifact.size = 6 * 1024**3  # sizes beyond 32 bits fit
            ids.append(artifact.id)
    assert ids[0] == ids[1]
    with session_scope(catalog_url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None and [a.size for a in backup.artifacts] == [6 * 1024**3]


def test_one_active_restore_per_namespace(catalog_url: str) -> None:
    def restore() -> int:
        with session_scope(catalog_url) as session:
            return queries.create_restore(
                session,
                namespace="app",
                source_namespace="app",
                timestamp="2023-02-02t17-03-15",
                services=["db"],
                skipped=[],
                backup_url="file:///x/",
            ).id

    first = restore()
    with pytest.raises(ConflictError):
        restore()
    with session_scope(catalog_url) as session:
        row = queries.get_restore(session, restore_id=first)
        assert row is not None
        row.status = SUCCESS
    second = restore()
    with session_scope(catalog_url) as session:
        latest = queries.latest_restore(session, timestamp="2023-02-02t17-03-15")
        assert latest is not None and latest.id == second


# What a catalog holds around one backup: each row must outlive every migration step.
HISTORY = {"backups": 1, "artifacts": 1, "upload_parts": 2, "verifications": 1, "hook_runs": 1}


def add_history(url: str) -> None:
    """One backup with an artifact, two upload parts, a verification and a hook run."""
    stamp = new_backup(url)
    with session_scope(url) as session:
        backup = queries.get_backup(session, namespace="app", timestamp=stamp)
        assert backup is not None
        backup.status = SUCCESS
        artifact = queries.upsert_artifact(
            session,
            backup=backup,
            service="db",
            kind="sqlite",
            key="k",
            fmt="sqlite",
            compression="zstd",
        )
        for number in (1, 2):
            session.add(
                UploadPart(
                    artifact_id=artifact.id, number=number, size=5, etag="e", sha256="0" * 64
                )
            )
        session.add(
            Verification(
                backup_id=backup.id,
                namespace="app",
                timestamp=stamp,
                kind="read",
                status=SUCCESS,
                checked_at=MOMENT,
            )
        )
        session.add(
            HookRun(
                backup_id=backup.id,
                service="db",
                hook="pre",
                program="true",
                status=SUCCESS,
                detail="exit 0",
                started_at=MOMENT,
                finished_at=MOMENT,
            )
        )


def history_counts(url: str) -> dict[str, int]:
    """Rows of each history table that exists (a verification counts only while it still
    names its backup)."""
    dispose_engines()  # the schema just changed under the pooled connections
    engine = get_engine(url)
    tables = set(inspect(engine).get_table_names())
    counts: dict[str, int] = {}
    with engine.connect() as connection:
        for table in HISTORY:
            if table in tables:
                where = " WHERE backup_id IS NOT NULL" if table == "verifications" else ""
                counts[table] = int(
                    connection.scalar(text(f"SELECT count(*) FROM {table}{where}")) or 0
                )
    return counts


def test_migrations_go_down_and_up_again(catalog_url: str) -> None:
    add_history(catalog_url)
    config = alembic_config(catalog_url)
    script = ScriptDirectory.from_config(config)
    newest_first = [revision.revision for revision in script.walk_revisions()]
    assert history_counts(catalog_url) == HISTORY
    # One step at a time to the first revision and back: nothing is lost on the way
    # (SQLite rebuilds a table to drop a column; its foreign keys must not cascade).
    steps = [(command.downgrade, revision) for revision in newest_first[1:]]
    steps += [(command.upgrade, revision) for revision in reversed(newest_first[:-1])]
    dropped: set[str] = set()  # a table dropped on the way down comes back empty
    for step, revision in steps:
        step(config, revision)
        counts = history_counts(catalog_url)
        dropped |= HISTORY.keys() - counts.keys()
        expected = {t: 0 if t in dropped else HISTORY[t] for t in counts}
        assert counts == expected, (step.__name__, revision)
    assert dropped == {"upload_parts", "verifications", "hook_runs"}

    command.downgrade(config, "base")
    dispose_engines()
    assert "backups" not in inspect(get_engine(catalog_url)).get_table_names()
    command.upgrade(config, "head")
    upgrade_catalog(catalog_url)  # already at head: nothing to do
    tables = set(inspect(get_engine(catalog_url)).get_table_names())
    assert {"backups", "artifacts", "restores"} <= tables


def test_a_migration_that_leaves_dangling_rows_on_sqlite_fails_loudly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    add_history(url)
    with closing(sqlite3.connect(tmp_path / "catalog.db")) as connection:  # foreign keys off
        connection.execute("DELETE FROM backups")
        connection.commit()
    with pytest.raises(PermanentError) as caught:
        command.downgrade(alembic_config(url), "-1")
    message = str(caught.value)
    assert "1 in artifacts (to backups)" in message and "1 in hook_runs (to backups)" in message
    dispose_engines()
