"""The catalog's listing (workers/catalog/listing.py) on SQLite and on a real PostgreSQL:
the `service` filter reads the JSON list of services as text, which each database
spells its own way; pages break timestamp ties between namespaces by id.

(tests/unit/test_api_backups.py covers the endpoint itself on SQLite.)
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.catalog_seed import add_backup, seed_catalog
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.listing import BackupFilter, BackupPage, Position, backup_page
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import SUCCESS

pytestmark = pytest.mark.integration
BOTH = ("app", "team-b")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/catalog.db"
    else:
        url = request.getfixturevalue("pg_database")
    upgrade_catalog(url)
    yield url
    dispose_engines()


def page(
    url: str, where: BackupFilter, after: Position | None = None, limit: int = 100
) -> BackupPage:
    with session_scope(url) as session:
        found = backup_page(session, where=where, after=after, limit=limit)
        for listed in found.backups:  # read inside the session
            _ = listed.backup.timestamp, listed.backup.namespace
        return found


def names(found: BackupPage) -> list[tuple[str, str]]:
    return [(item.backup.namespace, item.backup.timestamp) for item in found.backups]


def test_filters_and_sizes(catalog_url: str) -> None:
    seeded = seed_catalog(catalog_url)
    git = names(page(catalog_url, BackupFilter(BOTH, service="gitserver")))
    assert ("app", seeded.running) in git and ("app", seeded.good) in git  # by list, by artifact
    assert ("app", seeded.failed) not in git and len(git) == 3
    # `post` is a prefix of `postgres`: the name is matched whole.
    assert names(page(catalog_url, BackupFilter(BOTH, service="post"))) == []
    assert names(page(catalog_url, BackupFilter(BOTH, status="Failed"))) == [("app", seeded.failed)]
    window = BackupFilter(("app",), since=seeded.good, until=seeded.failed)
    assert names(page(catalog_url, window)) == [("app", seeded.failed), ("app", seeded.good)]
    assert names(page(catalog_url, BackupFilter(()))) == []
    (good,) = [
        item
        for item in page(catalog_url, BackupFilter(("app",), status=SUCCESS)).backups
        if item.backup.timestamp == seeded.good
    ]
    assert good.stored == (12 + 120) * 2**20 + 2**16 and good.source == (80 + 180) * 2**20 + 2**18


def test_pages_break_timestamp_ties_between_namespaces(catalog_url: str) -> None:
    start = datetime(2023, 2, 2, tzinfo=UTC)
    for n in range(5):
        for namespace in BOTH:
            add_backup(
                catalog_url,
                namespace=namespace,
                moment=start + timedelta(minutes=n),
                status=SUCCESS,
                sizes={"files": (n, n)},
            )
    everything = names(page(catalog_url, BackupFilter(BOTH)))
    assert len(everything) == 10
    walked: list[tuple[str, str]] = []
    after: Position | None = None
    while True:
        found = page(catalog_url, BackupFilter(BOTH), after=after, limit=3)
        walked += names(found)
        if found.next is None:
            break
        after = found.next
    assert walked == everything
