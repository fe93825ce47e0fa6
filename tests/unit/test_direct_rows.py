"""`backfleet backup` writes its request in plain SQL (workers/catalog/direct_rows.py): the
same Pending row, the same conflicts and the same errors as the ORM's queries, on SQLite
and on PostgreSQL, so that the request reads the same whichever wrote it."""

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.direct import CatalogDriverError, DirectCatalog
from workers.catalog.direct_rows import DirectRows
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import PENDING, RUNNING, SUCCESS, Artifact, Backup
from workers.cli.exits import outage_of
from workers.errors import ConfigError, ConflictError, UnreachableError
from workers.settings import get_settings
from workers.timestamps import format_timestamp

REQUEST = {
    "services": ["db", "files"],
    "only_config": False,
    "trigger": "cli",
    "requested_by": "cli",
    "requested_customer": None,
}


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    upgrade_catalog(url)
    yield url
    dispose_engines()


@pytest.fixture
def rows(url: str) -> Iterator[DirectRows]:
    catalog = DirectCatalog(url)
    yield DirectRows(catalog)
    catalog.close()


@pytest.fixture
def catalog_setting(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """DATABASE_URL as the CLI would read it, for the messages that name it."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def _orm_row(url: str, namespace: str, timestamp: str) -> Backup:
    with session_scope(url) as session:
        row = queries.get_backup(session, namespace=namespace, timestamp=timestamp)
        assert row is not None
        session.expunge(row)
        return row


def test_the_pending_row_is_the_one_the_orm_writes(url: str, rows: DirectRows) -> None:
    direct = rows.create_backup(namespace="app", **REQUEST)
    with session_scope(url) as session:
        orm = queries.create_backup(session, namespace="other", **REQUEST)
        orm_stamp = orm.timestamp
    written, expected = _orm_row(url, "app", direct.timestamp), _orm_row(url, "other", orm_stamp)
    assert written.id == direct.id and written.status == PENDING
    different = {"id", "namespace", "timestamp", "created_at"}
    for column in Backup.__table__.columns:
        if column.name not in different:
            assert getattr(written, column.name) == getattr(expected, column.name), column.name
    assert written.services == ["db", "files"] and written.only_config is False
    assert written.created_at.tzinfo is not None
    assert abs(written.created_at - expected.created_at) < timedelta(seconds=30)
    assert direct.timestamp == format_timestamp(written.created_at)[: len(direct.timestamp)]
    if url.startswith("sqlite"):  # stored alike, byte for byte in form
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            stored = db.execute(
                "SELECT typeof(created_at), length(created_at), services, only_config, pinned "
                "FROM backups ORDER BY namespace"
            ).fetchall()
        assert stored[0] == stored[1], stored


def test_a_request_names_what_is_in_its_way_as_the_orm_does(url: str, rows: DirectRows) -> None:
    with session_scope(url) as session:
        restore = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp="2026-01-01t00-00-00",
            services=["db"],
            skipped=[],
            backup_url="x",
        )
        restore_id = restore.id
    with pytest.raises(ConflictError) as refused:
        rows.create_backup(namespace="app", **REQUEST)
    assert str(refused.value) == "a restore of 2026-01-01t00-00-00 into namespace app is Pending"
    assert refused.value.timestamp == "2026-01-01t00-00-00"
    with session_scope(url) as session:
        done = queries.get_restore(session, restore_id=restore_id)
        assert done is not None
        done.status = SUCCESS

    first = rows.create_backup(namespace="app", **REQUEST)
    with pytest.raises(ConflictError) as direct_refusal:
        rows.create_backup(namespace="app", **REQUEST)
    with session_scope(url) as session, pytest.raises(ConflictError) as orm_refusal:
        queries.create_backup(session, namespace="app", **REQUEST)
    assert str(direct_refusal.value) == str(orm_refusal.value)
    assert str(direct_refusal.value) == f"backup {first.timestamp} of namespace app is Pending"
    assert direct_refusal.value.timestamp == first.timestamp


def test_a_second_taken_by_a_finished_backup_moves_the_request_to_the_next(
    url: str, rows: DirectRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    with session_scope(url) as session:
        for second in range(2):
            taken = queries.create_backup(
                session,
                namespace="app",
                moment=moment + timedelta(seconds=second),
                trigger="test",
                services=["db"],
                only_config=False,
            )
            taken.status = SUCCESS
    monkeypatch.setattr("workers.catalog.direct_rows.utcnow", lambda: moment)
    assert rows.create_backup(namespace="app", **REQUEST).timestamp == "2026-03-01t12-00-02"


def test_an_unqueued_request_is_forgotten_unless_a_worker_has_it(
    url: str, rows: DirectRows
) -> None:
    pending = rows.create_backup(namespace="app", **REQUEST)
    assert rows.forget_unqueued_backup(pending.id) is True
    assert rows.forget_unqueued_backup(pending.id) is True  # gone already
    taken = rows.create_backup(namespace="app", **REQUEST)
    with session_scope(url) as session:
        row = session.get(Backup, taken.id)
        assert row is not None
        row.status = RUNNING
    assert rows.forget_unqueued_backup(taken.id) is False
    assert _orm_row(url, "app", taken.timestamp).status == RUNNING


def test_the_task_id_is_recorded_once(url: str, rows: DirectRows) -> None:
    pending = rows.create_backup(namespace="app", **REQUEST)
    rows.set_backup_task(pending.id, "task-1")
    rows.set_backup_task(pending.id, "task-2")  # a worker's (or an earlier) id stands
    task = rows.backup_task(namespace="app", timestamp=pending.timestamp)
    assert task is not None and (task.id, task.task_id) == (pending.id, "task-1")
    assert task.services == ["db", "files"]
    assert rows.backup_task(namespace="app", timestamp="2001-01-01t00-00-00") is None


def test_what_a_waiting_client_reads(url: str, rows: DirectRows) -> None:
    with session_scope(url) as session:
        previous = queries.create_backup(
            session,
            namespace="app",
            trigger="test",
            services=["db", "files", "old"],
            only_config=False,
            moment=datetime(2026, 1, 1, tzinfo=UTC),
        )
        previous.status = SUCCESS
        for service, size in (("db", 100), ("files", None), ("old", 7)):
            session.add(
                Artifact(
                    backup=previous,
                    service=service,
                    kind="x",
                    key=service,
                    format="x",
                    compression="zstd",
                    source_size=size,
                )
            )
    pending = rows.create_backup(namespace="app", **REQUEST)
    task = rows.backup_task(namespace="app", timestamp=pending.timestamp)
    assert task is not None
    assert rows.expected_size(task, namespace="app") == 100  # its services' sizes only
    state = rows.backup_state(namespace="app", timestamp=pending.timestamp)
    assert state is not None and (state.status, state.error, state.bytes_done) == (PENDING, None, 0)
    with session_scope(url) as session:
        row = session.get(Backup, pending.id)
        assert row is not None
        row.status, row.error = "Failed", "it broke"
        for service, done in (("db", 5), ("files", 6)):
            session.add(
                Artifact(
                    backup=row,
                    service=service,
                    kind="x",
                    key=service,
                    format="x",
                    compression="zstd",
                    bytes_done=done,
                )
            )
    state = rows.backup_state(namespace="app", timestamp=pending.timestamp)
    assert state is not None and (state.status, state.error, state.bytes_done) == (
        "Failed",
        "it broke",
        11,
    )
    assert rows.backup_state(namespace="app", timestamp="2001-01-01t00-00-00") is None


def test_a_catalog_without_its_tables_says_run_migrate(
    tmp_path: Path, catalog_setting: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'empty' / 'catalog.db'}"
    catalog_setting.setenv("DATABASE_URL", url)
    with pytest.raises(CatalogDriverError) as failed:
        DirectRows(DirectCatalog(url)).create_backup(namespace="app", **REQUEST)
    assert failed.value.kind == "OperationalError" and "no such table" in str(failed.value)
    # Created as db.py's engine creates a catalog: private, in a private folder.
    assert (tmp_path / "empty" / "catalog.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "empty").stat().st_mode & 0o777 == 0o700
    mapped = outage_of(failed.value)
    assert isinstance(mapped, ConfigError)
    assert "its tables are missing or behind: run `backfleet migrate`" in str(mapped)


def test_a_catalog_that_does_not_answer_is_an_outage(catalog_setting: pytest.MonkeyPatch) -> None:
    from workers.cli.embedded_redis import free_port

    url = f"postgresql://backfleet:s3cret@127.0.0.1:{free_port()}/x"
    catalog_setting.setenv("DATABASE_URL", url)
    with pytest.raises(CatalogDriverError) as failed:
        DirectRows(DirectCatalog(url)).backup_state(namespace="app", timestamp="x")
    mapped = outage_of(failed.value)
    assert isinstance(mapped, UnreachableError)
    assert str(mapped).startswith("cannot reach the catalog at postgresql://backfleet:***@")
    assert "OperationalError; start it or fix DATABASE_URL" in str(mapped)
    assert "s3cret" not in str(mapped)


def test_a_url_in_another_form_goes_through_the_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}?timeout=5"
    upgrade_catalog(url)
    try:
        catalog = DirectCatalog(url)
        rows = DirectRows(catalog)
        pending = rows.create_backup(namespace="app", **REQUEST)
        state = rows.backup_state(namespace="app", timestamp=pending.timestamp)
        assert state is not None and state.status == PENDING
        catalog.close()
    finally:
        dispose_engines()
