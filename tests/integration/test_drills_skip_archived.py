"""Routine drills leave archived backups alone (review of issue 19's tiers): a drill of a
Deep Archive copy pays a retrieval and waits longer than a task may run, so the planner
takes only the backups whose artifacts of the service are readable now."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.catalog_seed import add_backup
from workers.catalog import recoveries
from workers.catalog.db import dispose_engines, session_scope
from workers.catalog.migrate import upgrade_catalog
from workers.catalog.models import SUCCESS, Artifact
from workers.timestamps import utcnow

pytestmark = pytest.mark.integration


def test_drill_candidates_leave_out_archived_backups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    upgrade_catalog(url)
    day = utcnow() - timedelta(days=400)
    sizes = {"postgres": (1000, 4000)}
    old = add_backup(url, namespace="app", moment=day, status=SUCCESS, sizes=sizes, seconds=5)
    new = add_backup(
        url, namespace="app", moment=day + timedelta(days=399), status=SUCCESS, sizes=sizes
    )
    with session_scope(url) as session:
        session.execute(
            update(Artifact)
            .where(Artifact.backup_id == old[1])
            .values(storage_class="DEEP_ARCHIVE")
        )
    with session_scope(url) as session:
        every = recoveries.drill_candidates(session, namespace="app", service="postgres")
        readable = recoveries.drill_candidates(
            session,
            namespace="app",
            service="postgres",
            archived=frozenset({"GLACIER", "DEEP_ARCHIVE"}),
        )
    dispose_engines()
    assert [c.timestamp for c in every] == [new[0], old[0]]
    assert [c.timestamp for c in readable] == [new[0]]
