"""A `pitr = true` service through the fleet: its scheduled backup is a base backup, a
restore of that backup (as the API asks for it, by timestamp) lands the database as it
was at the backup's consistent point, and a drill restores it into a scratch database
and compares the row counts; on the local store and on an S3 server."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.health_fleet import make_fleet, take_backup
from tests.pitr_cluster import ROLE, SPOIL, PitrCluster, run, scratch_processes, state
from tests.pitr_cluster import pitr_cluster as pitr_cluster  # the fixture
from tests.pitr_cluster import scratch_root as scratch_root  # the fixture
from tests.plugins.object_stores import S3Server
from workers.catalog import queries
from workers.catalog.db import dispose_engines, session_scope
from workers.fleet import Fleet
from workers.operations import restore_test as rt
from workers.operations.jobs import request_restore
from workers.operations.restore import run_restore
from workers.repository.manifest import Manifest, manifest_key
from workers.stores import ObjectStore
from workers.stores.s3 import S3Store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore | None:
    if request.param == "local":
        return None  # make_fleet's local store
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3Store.from_settings(server.make_settings(bucket))


def drill_databases(cluster: PitrCluster) -> list[str]:
    with psycopg.connect(cluster.admin()) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'backfleet_restore_test_%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_pitr_service_is_backed_up_restored_by_timestamp_and_drilled(
    tmp_path: Path,
    pitr_cluster: PitrCluster,
    scratch_root: Path,
    store: ObjectStore | None,
) -> None:
    app = pitr_cluster.url(pitr_cluster.fresh_database())
    with psycopg.connect(pitr_cluster.admin(), autocommit=True) as conn:  # drills need it
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(ROLE)))
    fleet: Fleet = make_fleet(
        tmp_path,
        store=store,
        extra_services=f'[namespaces.app.services.pg]\nkind = "postgres"\nurl = "{app}"\n'
        "pitr = true\n",
        pitr_scratch_dir=scratch_root,
    )
    original = state(app)

    stamp = take_backup(fleet)

    with fleet.store.open_read(manifest_key("app", stamp)) as handle:
        manifest = Manifest.from_bytes(handle.read())
    entry = manifest.artifact("pg")
    assert entry is not None and entry.format == "pgbase"
    assert entry.key.endswith("/pg.pgbase.zst")
    assert {"system_identifier", "timeline", "start_lsn", "end_lsn"} <= set(entry.source)

    run(app, SPOIL)
    restore = request_restore(
        fleet,
        namespace="app",
        timestamp=stamp,
        requested_by="test",
        enqueue=lambda *_: uuid.uuid4().hex,
        skip=["db", "files"],
    )
    assert run_restore(fleet, restore_id=restore.id) == "Success"
    with session_scope(fleet.settings.database_url) as session:
        row = queries.get_restore(session, restore_id=restore.id)
        assert row is not None and row.error is None
    assert state(app) == original
    assert list(scratch_root.iterdir()) == [] and scratch_processes(scratch_root) == []

    run(app, "INSERT INTO projects VALUES (5000, 'after the restore', 'x')")
    (result,) = rt.run_restore_tests(fleet, namespace="app", timestamp=stamp)
    assert (result.status, result.error) == ("Success", None)
    assert "pg" in result.tested
    (drill,) = [drill for drill in result.drills if drill.service == "pg"]
    counts = {"billing.invoices": 900, "public.projects": 400}
    assert drill.counts_expected == counts and drill.counts_found == counts
    # No WAL streamed here: the drill goes to the consistent point, and says why.
    assert drill.target_time is None
    assert drill.target_skipped == "no recoverable window: no WAL shipped yet"
    assert drill_databases(pitr_cluster) == []
    assert list(scratch_root.iterdir()) == [] and scratch_processes(scratch_root) == []
    with psycopg.connect(app) as conn:  # the live database is not touched by a drill
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (401,)
