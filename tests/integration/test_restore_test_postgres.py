"""A test restore of a real PostgreSQL backup into a scratch database that is always dropped."""

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.health_fleet import make_fleet, rewrite_manifest, take_backup
from tests.servers import PostgresServer
from workers.catalog.db import dispose_engines
from workers.operations import restore_test as rt
from workers.repository.manifest import Manifest, manifest_key

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _engines() -> Iterator[None]:
    yield
    dispose_engines()


def scratch_databases(server: PostgresServer) -> list[str]:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'backfleet_restore_test_%'"
        ).fetchall()
    return [row[0] for row in rows]


def test_postgres_restores_into_a_scratch_database_with_the_recorded_counts(
    tmp_path: Path, pg_database: str, postgres_server: PostgresServer
) -> None:
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA billing;"
            "CREATE TABLE public.projects (id int PRIMARY KEY, name text);"
            "INSERT INTO public.projects SELECT g, 'p' || g FROM generate_series(1, 300) g;"
            "CREATE TABLE billing.invoices (id int, total numeric);"
            "INSERT INTO billing.invoices SELECT g, g * 1.5 FROM generate_series(1, 42) g;"
        )
    fleet = make_fleet(
        tmp_path,
        extra_services=f'[namespaces.app.services.pg]\nkind = "postgres"\nurl = "{pg_database}"',
    )
    stamp = take_backup(fleet)
    with fleet.store.open_read(manifest_key("app", stamp)) as handle:
        manifest = Manifest.from_bytes(handle.read())
    entry = manifest.artifact("pg")
    assert entry is not None
    assert entry.source["row_counts"] == {"billing.invoices": 42, "public.projects": 300}
    # Rows added after the backup are not in it: the live database differs, the test passes.
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO public.projects VALUES (1000, 'later')")

    (result,) = rt.run_restore_tests(fleet)
    assert (result.status, result.error) == ("Success", None)
    assert result.tested == ["db", "files", "pg"]
    assert scratch_databases(postgres_server) == []
    with psycopg.connect(pg_database) as conn:  # the live database is untouched
        assert conn.execute("SELECT count(*) FROM public.projects").fetchone() == (301,)

    # Counts that do not match fail the test, and the scratch database still goes.
    entry.source["row_counts"]["public.projects"] = 299
    rewrite_manifest(fleet, manifest)  # as if the fleet had recorded these counts
    (result,) = rt.run_restore_tests(fleet, timestamp=stamp, namespace="app")
    assert result.status == "Failed"
    assert "public.projects: 299 recorded, 300 restored" in (result.error or "")
    assert scratch_databases(postgres_server) == []
