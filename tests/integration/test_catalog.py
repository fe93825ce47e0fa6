"""The catalog's queries and migrations on SQLite and on a real PostgreSQL."""

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text

from workers.catalog import queries
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import alembic_config, upgrade_catalog
from workers.catalog.models import (
    FAILED,
    PENDING,
    SUCCESS,
    Artifact,
    Backup,
    HookRun,
    UploadPart,
    Verification,
)
from workers.errors import ConflictError, PermanentError
from workers.timestamps import format_timestamp

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


# --- when each service's newest backup was last read back, over a long history ---

HOURS = 2000  # hourly backups: about 83 days of history
LAST_DAY = HOURS // 24 - 1  # the last daily pass


@dataclass(frozen=True)
class Check:
    backup: int
    started: datetime
    status: str
    store: str = "primary"
    recorded_start: bool = True  # False: a row from before started_at was recorded


def build_history(url: str) -> tuple[dict[int, dict[str, Any]], dict[int, set[str]], list[Check]]:
    """HOURS hourly backups of `db` (every one; a few failed, a few with db failed) and
    `web` (its own daily schedule), each finished 10 min after its timestamp (some with no
    finished_at), and daily passes at 03:00 that read the newest backup holding each
    service and two older ones (the sample), some failing, one only in the secondary."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    backups: dict[int, dict[str, Any]] = {}
    holds: dict[int, set[str]] = {}
    artifacts: list[dict[str, Any]] = []
    for n in range(1, HOURS + 1):
        moment = start + timedelta(hours=n - 1)
        services = ["db", "web"] if n % 24 == 5 else ["db"]
        status = FAILED if n % 97 == 0 else SUCCESS
        backups[n] = {
            "id": n,
            "namespace": "app",
            "timestamp": format_timestamp(moment),
            "status": status,
            "services": services,
            "created_at": moment,
            "finished_at": None if n % 211 == 0 else moment + timedelta(minutes=10),
        }
        holds[n] = set()
        for service in services:
            ok = status == SUCCESS and not (service == "db" and n % 89 == 0)
            if ok:
                holds[n].add(service)
            artifacts.append(
                {
                    "backup_id": n,
                    "service": service,
                    "kind": "sqlite",
                    "key": f"app/{n}/{service}",
                    "format": "sqlite",
                    "compression": "zstd",
                    "status": SUCCESS if ok else FAILED,
                }
            )
    checks: list[Check] = []
    sample = 1
    for day in range(LAST_DAY + 1):
        at = start + timedelta(days=day, hours=3)
        done = [n for n, b in backups.items() if _done(b) <= at]
        for service in ("db", "web"):
            held = [n for n in done if service in holds[n]]
            if held:
                status = FAILED if day % 7 == LAST_DAY % 7 and service == "db" else SUCCESS
                checks.append(Check(max(held), at, status, recorded_start=day > 5))
                if day % 11 == 3:  # read in both stores; the secondary's copy was bad
                    checks.append(Check(max(held), at, FAILED, "secondary"))
        for n in (sample, sample + 1):
            checks.append(Check(n, at, FAILED if n % 5 == 0 else SUCCESS))
        sample += 2
    with session_scope(url) as session:
        session.execute(insert(Backup), list(backups.values()))
        session.execute(insert(Artifact), artifacts)
        session.execute(
            insert(Verification),
            [
                {
                    "backup_id": c.backup,
                    "namespace": "app",
                    "timestamp": backups[c.backup]["timestamp"],
                    "kind": "read",
                    "store": c.store,
                    "status": c.status,
                    # Reads of 70 minutes: the end of a check is not its start.
                    "checked_at": c.started if not c.recorded_start else c.started + LONG_READ,
                    "started_at": c.started if c.recorded_start else None,
                }
                for c in checks
            ],
        )
    return backups, holds, checks


LONG_READ = timedelta(minutes=70)


def _done(backup: dict[str, Any]) -> datetime:
    return backup["finished_at"] or backup["created_at"]


def expected_last(
    backups: dict[int, dict[str, Any]],
    holds: dict[int, set[str]],
    checks: list[Check],
    service: str,
    since: datetime | None,
) -> datetime | None:
    """The definition, row by row: a passing check (in every store it was read from) of a
    backup holding the service, started after `since`, when no newer backup holding it had
    finished."""
    counted = []
    for check in checks:
        backup = backups[check.backup]
        if check.status != SUCCESS or service not in holds[check.backup]:
            continue
        if since is not None and check.started <= since:
            continue
        if any(
            c.backup == check.backup and c.started == check.started and c.status == FAILED
            for c in checks
        ):
            continue
        newer_done = [
            _done(other)
            for n, other in backups.items()
            if service in holds[n] and other["timestamp"] > backup["timestamp"]
        ]
        if all(done > check.started for done in newer_done):
            counted.append(check.started)
    return max(counted, default=None)


def test_when_each_service_s_newest_backup_was_last_read_back_over_a_long_history(
    catalog_url: str,
) -> None:
    backups, holds, checks = build_history(catalog_url)
    end = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=HOURS)
    sinces = [None, end - timedelta(days=1), end - timedelta(days=3), end - timedelta(days=40)]
    with session_scope(catalog_url) as session:
        for service in ("db", "web"):
            for since in sinces:
                expected = expected_last(backups, holds, checks, service, since)
                found = queries.last_verified_newest(
                    session, namespace="app", service=service, since=since
                )
                assert found == expected, (service, since)
        # The answers are not trivial: the last pass's check of db failed, not web's.
        db = queries.last_verified_newest(session, namespace="app", service="db")
        web = queries.last_verified_newest(session, namespace="app", service="web")
        last_pass = datetime(2024, 1, 1, 3, tzinfo=UTC) + timedelta(days=LAST_DAY)
        assert (db, web) == (last_pass - timedelta(days=1), last_pass)
        read_last = [c.backup for c in checks if c.started == last_pass and c.store == "primary"]
        db_read, web_read = read_last[:2]
        assert queries.last_read_failed(session, backup_id=db_read)
        assert not queries.last_read_failed(session, backup_id=web_read)
