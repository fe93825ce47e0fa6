"""The catalog's queries and migrations on SQLite and on a real PostgreSQL."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from workers.catalog import queries
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import alembic_config, upgrade_catalog
from workers.catalog.models import FAILED, PENDING, SUCCESS
from workers.errors import ConflictError

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


def test_migrations_go_down_and_up_again(catalog_url: str) -> None:
    config = alembic_config(catalog_url)
    command.downgrade(config, "base")
    dispose_engines()
    assert "backups" not in inspect(get_engine(catalog_url)).get_table_names()
    command.upgrade(config, "head")
    upgrade_catalog(catalog_url)  # already at head: nothing to do
    tables = set(inspect(get_engine(catalog_url)).get_table_names())
    assert {"backups", "artifacts", "restores"} <= tables
