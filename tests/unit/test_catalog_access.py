"""The one catalog access layer: only workers/catalog (and the audit's catalog module) build
queries, and the query functions that replaced the copies written out elsewhere."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.catalog import alerts, queries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import (
    FAILED,
    RUNNING,
    SUCCESS,
    Alert,
    Artifact,
    Backup,
    SkippedRun,
    UploadPart,
)
from workers.timestamps import utcnow

ROOT = Path(__file__).resolve().parents[2]
CATALOG_MODULES = ("workers/catalog/", "workers/audit/catalog.py")


def _imports_sqlalchemy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
            return True
    return False


def test_only_the_catalog_layer_imports_sqlalchemy() -> None:
    sources = [
        path
        for package in ("workers", "tasks", "api")
        for path in sorted((ROOT / package).rglob("*.py"))
    ]
    outside = [
        str(path.relative_to(ROOT))
        for path in sources
        if not str(path.relative_to(ROOT)).startswith(CATALOG_MODULES) and _imports_sqlalchemy(path)
    ]
    assert outside == []


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url)
    yield url
    dispose_engines()


def _backup(url: str, stamp: str, status: str, **fields: object) -> int:
    with session_scope(url) as session:
        row = Backup(
            namespace="app",
            timestamp=stamp,
            services=["db"],
            only_config=False,
            trigger="test",
            status=status,
            **fields,
        )
        session.add(row)
        session.flush()
        return row.id


def test_newest_success_and_the_least_recently_verified(url: str) -> None:
    old = _backup(url, "2026-01-01T00-00-00", SUCCESS, verified_at=utcnow())
    never = _backup(url, "2026-01-02T00-00-00", SUCCESS)
    newest = _backup(url, "2026-01-03T00-00-00", SUCCESS)
    _backup(url, "2026-01-04T00-00-00", FAILED)
    with session_scope(url) as session:
        found = queries.newest_success(session, namespace="app")
        assert found is not None and found.id == newest
        before = queries.newest_success(session, namespace="app", excluding_id=newest)
        assert before is not None and before.id == never
        assert queries.newest_success(session, namespace="other") is None
        rows = queries.least_recently_verified(
            session, namespace="app", excluding_id=newest, limit=5
        )
        assert [row.id for row in rows] == [never, old]
        assert queries.backup_namespaces(session) == {"app"}
        assert queries.uncopied_backups(session, limit=2) == [
            ("app", "2026-01-01T00-00-00"),
            ("app", "2026-01-02T00-00-00"),
        ]
        successful = queries.retention_facts(session, namespace="app")
        assert sorted(row.timestamp for row in successful) == [
            "2026-01-01T00-00-00",
            "2026-01-02T00-00-00",
            "2026-01-03T00-00-00",
        ]
        named = queries.retention_facts(
            session, namespace="app", timestamps=["2026-01-04T00-00-00"]
        )
        assert [(row.timestamp, row.status) for row in named] == [("2026-01-04T00-00-00", FAILED)]


def test_forget_parts_one_or_all(url: str) -> None:
    backup_id = _backup(url, "2026-01-01T00-00-00", RUNNING)
    with session_scope(url) as session:
        backup = session.get(Backup, backup_id)
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
        artifact.upload_id = "u1"
        for number in (1, 2, 3):
            session.add(
                UploadPart(
                    artifact_id=artifact.id, number=number, size=1, etag="e", sha256="0" * 64
                )
            )
        artifact_id = artifact.id
    with session_scope(url) as session:
        assert queries.running_upload_ids(session) == {"u1"}
        assert [a.id for a in queries.artifacts_of_upload(session, upload_id="u1")] == [artifact_id]
        queries.forget_parts(session, artifact_id=artifact_id, number=2)
        row = session.get(Artifact, artifact_id)
        assert row is not None
        session.refresh(row)
        assert sorted(part.number for part in row.parts) == [1, 3]
        queries.forget_parts(session, artifact_id=artifact_id)
        session.refresh(row)
        assert row.parts == []


def test_a_restore_result_is_written_only_by_the_attempt_that_owns_it(url: str) -> None:
    with session_scope(url) as session:
        restore = queries.create_restore(
            session,
            namespace="app",
            source_namespace="app",
            timestamp="2026-01-01T00-00-00",
            services=["db"],
            skipped=[],
            backup_url="u",
        )
        restore.status, restore.attempts = RUNNING, 2
        session.flush()
        restore_id = restore.id
    done = {"status": SUCCESS, "error": None, "finished_at": utcnow()}
    with session_scope(url) as session:
        stale = queries.finish_restore_attempt(
            session, restore_id=restore_id, attempt=1, values=done
        )
        assert stale is False
        assert queries.finish_restore_attempt(
            session, restore_id=restore_id, attempt=2, values=done
        )
        # Written once: the same attempt finds the row no longer Running.
        again = queries.finish_restore_attempt(
            session, restore_id=restore_id, attempt=2, values=done
        )
        assert again is False
    with session_scope(url) as session:
        assert queries.active_restores(session) == []
        row = queries.lock_restore(session, restore_id=restore_id)
        assert row is not None and row.status == SUCCESS


def test_a_skipped_run_is_recorded_once_per_task(url: str) -> None:
    for _ in range(2):
        with session_scope(url) as session:
            queries.record_skipped_run(
                session,
                namespace="app",
                schedule="regular",
                services=["db"],
                reason="busy",
                task_id="t1",
            )
    with session_scope(url) as session:
        assert session.query(SkippedRun).count() == 1


def test_an_open_alert_condition_is_inserted_once(url: str) -> None:
    def row() -> Alert:
        return Alert(condition="stale:app", event="BackupStale", text="t", opened_at=utcnow())

    with session_scope(url) as session:
        assert alerts.insert_unless_open(session, row=row())
        assert not alerts.insert_unless_open(session, row=row())
        assert alerts.condition_seen(session, condition="stale:app")
        assert alerts.open_conditions(session, prefix="stale:") == ["stale:app"]
        assert alerts.open_conditions(session, prefix="st%") == []  # taken literally
        for open_row in alerts.open_alerts(session, condition="stale:app"):
            open_row.resolved_at = utcnow()
    with session_scope(url) as session:
        assert alerts.open_conditions(session, prefix="stale:") == []
