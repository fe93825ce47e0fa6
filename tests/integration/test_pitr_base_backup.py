"""Base backups of a `pitr = true` PostgreSQL service, against a private cluster: made by
pg_basebackup through the pipeline, restored through a scratch PostgreSQL into the live
database, verified first, and the scratch always gone."""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fakes import stored_entry
from tests.pitr_cluster import PASSWORD, SPOIL, PitrCluster, run, scratch_processes, state
from tests.pitr_cluster import pitr_cluster as pitr_cluster  # the fixture
from tests.pitr_cluster import scratch_root as scratch_root  # the fixture
from tests.servers import PrivatePostgres, started
from workers.errors import ConfigError, IntegrityError, SourceError
from workers.monitoring.checks import check_source
from workers.pitr import scratch as scratch_module
from workers.pitr.base_restore import BaseBackupRestore
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import make_source, spec_for_format
from workers.sources import pg_server as pg_server_module
from workers.sources import process as process_module
from workers.sources.pgbase import PgBaseSource
from workers.sources.postgres import PostgresSource
from workers.stores.local import LocalStore
from workers.transfer.download import restore_artifact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def settings(scratch_root: Path) -> Settings:
    return Settings(pitr_scratch_dir=scratch_root, pitr_scratch_timeout="2m")


@pytest.fixture
def app(pitr_cluster: PitrCluster) -> Iterator[str]:
    """The service's database URL, seeded."""
    yield pitr_cluster.url(pitr_cluster.fresh_database())


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    made = LocalStore(tmp_path / "store")
    made.init()
    return made


def back_up(app: str, store: LocalStore, settings: Settings) -> ArtifactEntry:
    spec = ServiceSpec(kind="postgres", url=app, pitr=True)
    source = make_source(spec, settings)
    assert isinstance(source, PgBaseSource) and source.format == "pgbase"
    key = artifact_key("app", "2024-05-06t07-08-09", "pg", source.format, "zstd")
    return stored_entry(store, source, key=key, service="pg", part_size=5 * 1024 * 1024)


def restorer(app: str, entry: ArtifactEntry, settings: Settings, **kw: Any) -> BaseBackupRestore:
    return BaseBackupRestore(PostgresSource(app), entry.source, settings=settings, **kw)


def assert_no_scratch(root: Path) -> None:
    assert list(root.iterdir()) == []
    assert scratch_processes(root) == []


def test_a_base_backup_restores_the_database_as_it_was_at_the_consistent_point(
    app: str,
    pitr_cluster: PitrCluster,
    store: LocalStore,
    settings: Settings,
    scratch_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    commands: list[list[str]] = []
    real_popen = process_module.subprocess.Popen

    def recording_popen(argv: Any, *args: Any, **kwargs: Any) -> Any:
        commands.append([str(arg) for arg in argv])
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(process_module.subprocess, "Popen", recording_popen)
    original = state(app)

    entry = back_up(app, store, settings)

    facts = entry.source
    assert facts["kind"] == "postgres" and facts["database"] == app.rsplit("/", 1)[1]
    assert facts["system_identifier"] == pitr_cluster.system_identifier()
    assert facts["timeline"] == 1 and facts["superuser"] == "postgres"
    assert "/" in facts["start_lsn"] and "/" in facts["end_lsn"]
    assert facts["server_version"].startswith("15")
    assert facts["start_time"] < facts["end_time"]
    assert "row_counts" not in facts
    assert PASSWORD not in str(facts)
    assert any(argv[0] == "pg_basebackup" for argv in commands)
    assert all(PASSWORD not in " ".join(argv) for argv in commands)

    run(app, SPOIL)
    assert state(app) != original
    restore = restorer(app, entry, settings)
    restore_artifact(store=store, entry=entry, source=restore)

    assert state(app) == original
    assert restore.scratch_counts == {"billing.invoices": 900, "public.projects": 400}
    assert all(PASSWORD not in " ".join(argv) for argv in commands)
    assert_no_scratch(scratch_root)


def test_a_corrupt_base_backup_leaves_the_target_untouched(
    app: str, store: LocalStore, settings: Settings, scratch_root: Path
) -> None:
    entry = back_up(app, store, settings)
    run(app, SPOIL)
    before = state(app)
    path = store.root / entry.key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=restorer(app, entry, settings))

    assert state(app) == before
    assert_no_scratch(scratch_root)


def test_no_scratch_server_starts_before_every_stored_byte_is_verified(
    app: str,
    store: LocalStore,
    settings: Settings,
    scratch_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every byte is the real backup; only the manifest's digest differs."""
    entry = back_up(app, store, settings)
    run(app, SPOIL)
    before = state(app)
    started: list[object] = []
    monkeypatch.setattr(scratch_module.ScratchPostgres, "start", lambda *a, **k: started.append(a))
    wrong = entry.model_copy(update={"sha256": "0" * 64})

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=wrong, source=restorer(app, wrong, settings))

    assert started == []
    assert state(app) == before
    assert_no_scratch(scratch_root)


def test_the_scratch_is_gone_after_a_timeout_and_after_a_failure(
    app: str,
    store: LocalStore,
    settings: Settings,
    scratch_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = back_up(app, store, settings)
    run(app, SPOIL)
    before = state(app)

    # A server whose recovery never ends (as far as the wait can tell) is stopped in time.
    with monkeypatch.context() as patch:
        patch.setattr(scratch_module, "_recovered", lambda *args: "waiting")
        with pytest.raises(SourceError, match="did not finish its recovery within 1 s"):
            restore_artifact(
                store=store, entry=entry, source=restorer(app, entry, settings, timeout=1)
            )
    assert_no_scratch(scratch_root)

    # The server started and recovered; the dump then finds no such database.
    elsewhere = entry.model_copy(update={"source": {**entry.source, "database": "nope"}})
    with pytest.raises(SourceError, match="holds no database 'nope'"):
        restore_artifact(store=store, entry=elsewhere, source=restorer(app, elsewhere, settings))
    assert_no_scratch(scratch_root)

    # A base backup of another cluster is refused once its server is up.
    other = entry.model_copy(update={"source": {**entry.source, "system_identifier": "42"}})
    with pytest.raises(IntegrityError, match="manifest says 42"):
        restore_artifact(store=store, entry=other, source=restorer(app, other, settings))
    assert_no_scratch(scratch_root)
    assert state(app) == before


def test_missing_server_binaries_are_refused_before_anything_is_read(
    app: str,
    store: LocalStore,
    settings: Settings,
    scratch_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = back_up(app, store, settings)
    run(app, SPOIL)
    before = state(app)
    bare = tmp_path / "bin"  # the client tools only, as a client-only image has
    bare.mkdir()
    for tool in ("pg_dump", "pg_restore", "psql"):
        (bare / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    monkeypatch.setenv("PATH", str(bare))
    monkeypatch.setattr(pg_server_module, "DEBIAN_LIBDIR", tmp_path / "no-such-dir")

    with pytest.raises(ConfigError, match=r"PostgreSQL 15 server .* postgresql-15"):
        restore_artifact(store=store, entry=entry, source=restorer(app, entry, settings))

    assert state(app) == before
    assert_no_scratch(scratch_root)


def test_a_pitr_service_still_restores_its_older_dumps(
    app: str, store: LocalStore, settings: Settings
) -> None:
    """A dump made before `pitr` was turned on restores as a dump."""
    plain = ServiceSpec(kind="postgres", url=app)
    key = artifact_key("app", "2024-05-06t07-08-09", "pg", "pgdump", "zstd")
    entry = stored_entry(store, make_source(plain, settings), key=key, service="pg")
    original = state(app)
    run(app, SPOIL)

    pitr = ServiceSpec(kind="postgres", url=app, pitr=True)
    source = make_source(spec_for_format(pitr, entry.format), settings)
    assert source.format == "pgdump"
    restore_artifact(store=store, entry=entry, source=source)
    assert state(app) == original


def test_backfleet_check_says_whether_base_backups_are_possible(
    app: str, pitr_cluster: PitrCluster
) -> None:
    spec = ServiceSpec(kind="postgres", url=app, pitr=True)
    verdict = check_source(spec)
    assert "REPLICATION" in verdict and "restorable here (PostgreSQL 15 server found)" in verdict

    database = app.rsplit("/", 1)[1]
    run(pitr_cluster.admin(), "CREATE ROLE plain_reader LOGIN")
    try:
        plain = ServiceSpec(
            kind="postgres",
            url=f"postgresql://plain_reader@127.0.0.1:{pitr_cluster.port}/{database}",
            pitr=True,
        )
        with pytest.raises(ConfigError, match="needs the REPLICATION attribute"):
            check_source(plain)
    finally:
        run(pitr_cluster.admin(), "DROP ROLE plain_reader")


def test_a_base_backup_restored_into_another_cluster_brings_its_roles(
    app: str,
    pitr_cluster: PitrCluster,
    store: LocalStore,
    settings: Settings,
    scratch_root: Path,
) -> None:
    """The roles travel with a base backup as with a dump (issue 21: a new cluster gets its
    roles): read from the scratch server, created in the target cluster first."""
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    run(pitr_cluster.admin(), f"CREATE ROLE {owner} LOGIN CONNECTION LIMIT 3")
    run(
        pitr_cluster.admin(app.rsplit("/", 1)[1]),
        f"CREATE TABLE public.owned (id int); ALTER TABLE public.owned OWNER TO {owner}",
    )
    entry = back_up(app, store, settings)
    other = started(PrivatePostgres())
    try:
        target = other.create_database()
        restore = BaseBackupRestore(PostgresSource(target), entry.source, settings=settings)
        restore_artifact(store=store, entry=entry, source=restore)
        with psycopg.connect(target) as conn:
            owned = conn.execute(
                "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"
            ).fetchone()
            created = conn.execute(
                "SELECT rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname = %s", (owner,)
            ).fetchone()
        assert owned == (owner,) and created == (True, 3)
    finally:
        other.close()
    assert_no_scratch(scratch_root)
