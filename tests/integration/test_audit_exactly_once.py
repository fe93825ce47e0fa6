"""Each user event is shipped exactly once: ids that never go back, and flushes at once.

- SQLite: a purge of the highest ids must not let new events reuse them (below the
  shipped watermark they would never ship); migration 0007 makes the ids AUTOINCREMENT.
- PostgreSQL: ids come from a sequence before the insert commits; an insert that
  commits after a later one must still ship (the flush's SHARE lock waits for it).
- Two flushes running at once (and inserts while they run) ship each event once.
Real PostgreSQL and SQLite catalogs, the local store and the S3 server.
"""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from tests.audit_events import DAY_MS, T0, insert, make_events, once_each, shipped_counts
from tests.plugins.object_stores import S3Server
from workers.audit import catalog
from workers.audit.purge import purge_user_events
from workers.audit.ship import ShipLimits, commit_shipped, flush_user_events
from workers.catalog.db import dispose_engines, get_engine, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import UserEvent
from workers.stores.base import ObjectStore
from workers.stores.local import LocalStore
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
LIMITS = ShipLimits(batch_events=50, file_bytes=4 * 1024)
NOW_MS = T0 + 400 * DAY_MS  # "now" for the purge: every event made from T0 is old


@pytest.fixture
def local(tmp_path: Path) -> ObjectStore:
    store = LocalStore(tmp_path / "store")
    store.init()
    return store


def sqlite_url(tmp_path: Path, revision: str = "head") -> str:
    url = f"sqlite:///{tmp_path}/catalog.db"
    upgrade_catalog(url, revision)
    return url


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    upgrade_catalog(pg_database)
    yield pg_database
    dispose_engines()


def purge_all_shipped(url: str) -> int:
    from datetime import UTC, datetime

    now = datetime.fromtimestamp(NOW_MS / 1000, tz=UTC)
    return purge_user_events(database_url=url, retention_days=30, now=now)


def max_id(url: str) -> int:
    with session_scope(url) as session:
        return int(session.scalar(select(func.coalesce(func.max(UserEvent.id), 0))) or 0)


# --- SQLite: ids never go back ---


@pytest.mark.parametrize("revision", ["head", "0006"])
def test_sqlite_events_after_a_purge_of_the_highest_ship_exactly_once(
    tmp_path: Path, local: ObjectStore, revision: str
) -> None:
    url = sqlite_url(tmp_path, revision)
    try:
        insert(url, make_events(20, tag="first"))
        assert flush_user_events(store=local, database_url=url, limits=LIMITS).events == 20
        assert purge_all_shipped(url) == 20  # the highest ids are gone from the table
        insert(url, make_events(7, tag="second"))
        flush_user_events(store=local, database_url=url, limits=LIMITS)
        counts = shipped_counts(local)
    finally:
        dispose_engines()
    expected = once_each(20, tag="first") | once_each(7, tag="second")
    if revision == "head":
        assert counts == expected
    else:  # what 0007 fixes: the old plain rowid reused ids 1-7, below the watermark
        assert counts == once_each(20, tag="first")


def test_migration_0007_starts_new_ids_above_the_shipped_watermark(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path, "0006")
    try:
        insert(url, make_events(10))
        commit_shipped(url, "app", 10)
        with session_scope(url) as session:  # the top rows purged: a plain rowid would reuse 6
            session.execute(delete(UserEvent).where(UserEvent.id > 5))
        upgrade_catalog(url)
        insert(url, make_events(1, tag="new"))
        assert max_id(url) > 10
        with session_scope(url) as session:
            assert catalog.unshipped_event_count(session) == 1
    finally:
        dispose_engines()


# --- PostgreSQL: ids that commit out of order ---


def waiting_for_a_lock(url: str) -> bool:
    with session_scope(url) as session:
        query = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return bool(session.scalar(query))


def test_postgres_an_insert_that_commits_late_is_still_shipped(
    pg_url: str, local: ObjectStore
) -> None:
    late = Session(get_engine(pg_url))
    catalog.insert_events(late, events=make_events(1, tag="late"))  # takes the lower id
    insert(pg_url, make_events(3, tag="early"))  # higher ids, committed first
    done: list[int] = []
    flush = threading.Thread(
        target=lambda: done.append(
            flush_user_events(store=local, database_url=pg_url, limits=LIMITS).events
        )
    )
    flush.start()
    deadline = time.monotonic() + 20
    while flush.is_alive() and not waiting_for_a_lock(pg_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    late.commit()  # only now is the lower id visible
    late.close()
    flush.join(timeout=60)
    assert not flush.is_alive()
    flush_user_events(store=local, database_url=pg_url, limits=LIMITS)
    assert shipped_counts(local) == once_each(1, tag="late") | once_each(3, tag="early")
    assert done == [4]  # the first flush waited for the late insert and shipped it too


# --- two flushes at once ---


def store_for(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return S3Store.from_settings(server.make_settings(request.getfixturevalue("s3_bucket")))
    store = LocalStore(tmp_path / "store")
    store.init()
    return store


@pytest.mark.parametrize(
    ("catalog_kind", "store_kind"),
    [("postgresql", "local"), ("postgresql", "s3"), ("sqlite", "local")],
)
def test_two_flushes_at_once_ship_each_event_exactly_once(
    request: pytest.FixtureRequest, tmp_path: Path, catalog_kind: str, store_kind: str
) -> None:
    url = (
        request.getfixturevalue("pg_url") if catalog_kind == "postgresql" else sqlite_url(tmp_path)
    )
    store = store_for(store_kind, request, tmp_path)
    insert(url, make_events(600, step_ms=DAY_MS // 200) + make_events(200, namespace="other"))
    errors: list[BaseException] = []
    more = threading.Event()

    def flush_repeatedly() -> None:
        try:
            while True:
                flush_user_events(store=store, database_url=url, limits=LIMITS)
                if more.is_set():
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    flushes = [threading.Thread(target=flush_repeatedly) for _ in range(2)]
    for flush in flushes:
        flush.start()
    for chunk in range(6):  # inserts while both flush
        insert(url, make_events(50, start=T0 + chunk * 50_000, tag=f"late{chunk}"))
    more.set()
    for flush in flushes:
        flush.join(timeout=120)
    assert not any(flush.is_alive() for flush in flushes)
    assert errors == []
    flush_user_events(store=store, database_url=url, limits=LIMITS)  # whatever came last

    expected = Counter(once_each(600))
    for chunk in range(6):
        expected.update(once_each(50, tag=f"late{chunk}"))
    assert shipped_counts(store) == expected  # no duplicate, no loss
    assert shipped_counts(store, "other") == once_each(200)
    with session_scope(url) as session:
        assert catalog.unshipped_event_count(session) == 0
    dispose_engines()
