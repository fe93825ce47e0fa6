"""One suite for every source kind: the contract of workers/sources/base.py, kind by kind.

Parametrised over `KITS`, against real servers and files: PostgreSQL (the `pg_database`
fixture; a private cluster for the pgbase mode), MariaDB through the command kind, SQLite
files and directories. A new kind or mode is tested by adding its kit here
(test_kits_cover_every_registered_kind fails until then). Restores go through
pitr.base_restore.restore_source, as the restore operation's do.
Each kit seeds data, spoils it, and reads back a comparable state.
"""

import copy
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.fakes import stored_entry
from tests.pitr_cluster import ROLE, SPOIL, PitrCluster
from tests.pitr_cluster import pitr_cluster as pitr_cluster  # the pgbase kit's cluster
from tests.pitr_cluster import run as run_sql
from tests.pitr_cluster import state as pitr_state
from tests.plugins.mariadb import MariaDBDatabase, client_tool, drill_scripts, dump_tool
from workers.errors import IntegrityError
from workers.pitr.restore_source import checked_facts, drill_source, restore_source
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import MODES, SOURCES, Source, make_source, source_class
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@dataclass
class Kit:
    """A service of one kind and how to seed, spoil and read its data."""

    spec: ServiceSpec
    seed: Callable[[], None]
    spoil: Callable[[], None]  # change, add and remove data after the backup
    state: Callable[[], Any]  # everything a restore must bring back, comparable
    tamper: Callable[[dict[str, Any]], None]  # facts the restored data will not match


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    url: str = request.getfixturevalue("pg_database")

    def run(statements: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statements)  # type: ignore[arg-type]

    def state() -> Any:
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
            ).fetchall()
            rows = conn.execute("SELECT id, name, photo FROM people ORDER BY id").fetchall()
        return tables, rows

    return Kit(
        spec=ServiceSpec(kind="postgres", url=url),
        seed=lambda: run(
            "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, photo bytea);"
            "INSERT INTO people (name, photo) SELECT 'person ' || n, sha256(n::text::bytea)"
            " FROM generate_series(1, 500) AS n;"
        ),
        spoil=lambda: run(
            "DELETE FROM people WHERE id > 10; UPDATE people SET name = 'x' WHERE id = 2;"
            "CREATE TABLE created_later (x int);"
        ),
        state=state,
        tamper=lambda facts: facts["row_counts"].update({"public.people": 499}),
    )


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    path = tmp_path / "app.sqlite"

    def run(statements: str) -> None:
        with sqlite3.connect(path) as db:
            db.executescript(statements)
        db.close()

    def state() -> Any:
        db = sqlite3.connect(path)
        try:
            tables = db.execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
            return tables, db.execute("SELECT * FROM nodes ORDER BY id").fetchall()
        finally:
            db.close()

    return Kit(
        spec=ServiceSpec(kind="sqlite", path=path),
        seed=lambda: run(
            "CREATE TABLE nodes (id INTEGER PRIMARY KEY, label TEXT, blob BLOB);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
            " INSERT INTO nodes SELECT i, 'n' || i, randomblob(64) FROM n;"
        ),
        spoil=lambda: run(
            "DELETE FROM nodes WHERE id > 10; UPDATE nodes SET label = 'x' WHERE id = 2;"
            "CREATE TABLE created_later (x);"
        ),
        state=state,
        tamper=lambda facts: facts["row_counts"].update({"nodes": 499}),
    )


def _directory(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    root = tmp_path / "tree"

    def seed() -> None:
        (root / "sub" / "deeper").mkdir(parents=True)
        (root / "a.txt").write_text("alpha\n")
        (root / "sub" / "b.bin").write_bytes(os.urandom(300_000))
        (root / "sub" / "deeper" / "empty").write_bytes(b"")

    def spoil() -> None:
        (root / "a.txt").write_text("ALPHA\n")
        (root / "sub" / "b.bin").unlink()
        (root / "later.txt").write_text("new\n")

    def state() -> Any:
        return sorted(
            (str(path.relative_to(root)), path.read_bytes() if path.is_file() else None)
            for path in root.rglob("*")
        )

    return Kit(
        spec=ServiceSpec(kind="directory", path=root),
        seed=seed,
        spoil=spoil,
        state=state,
        tamper=lambda facts: facts.update({"files": facts["files"] + 1}),
    )


def _command(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    database: MariaDBDatabase = request.getfixturevalue("mariadb_database")
    connection = database.server.client_args()
    dump = [dump_tool(), *connection, "--single-transaction", "--add-drop-database"]
    counts, drill = drill_scripts(database.server, tmp_path / "scripts", database.name)
    return Kit(
        spec=ServiceSpec(
            kind="command",
            dump_command=[*dump, "--databases", database.name],
            restore_command=[client_tool(), *connection],
            format="sql",
            count_command=counts,
            test_restore_command=drill,
        ),
        seed=lambda: database.sql(
            "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;"
            "INSERT INTO people VALUES (1, 'a'), (2, 'b'), (3, 'ünï');"
        ),
        spoil=lambda: database.sql(
            "DELETE FROM people WHERE id = 3; UPDATE people SET name = 'x' WHERE id = 2;"
            "CREATE TABLE created_later (x INT);"
        ),
        state=lambda: database.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
            " ORDER BY 1; SELECT id, HEX(name) FROM people ORDER BY id;"
        ),
        # The drill's check: the counts its test_restore_command prints against count_command's.
        tamper=lambda facts: facts["row_counts"].update(people=4),
    )


def _pgbase(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    """The postgres kind's pgbase mode (`pitr = true`), on a private cluster: a base
    backup copies the whole cluster. Restored, as the fleet does, through a scratch server."""
    cluster: PitrCluster = request.getfixturevalue("pitr_cluster")
    url = cluster.url(cluster.fresh_database())
    with psycopg.connect(cluster.admin(), autocommit=True) as conn:  # for its drill
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(ROLE)))
    return Kit(
        spec=ServiceSpec(kind="postgres", url=url, pitr=True),
        seed=lambda: None,  # fresh_database seeded it
        spoil=lambda: run_sql(url, SPOIL),
        state=lambda: pitr_state(url),
        tamper=lambda facts: facts["row_counts"].update({"public.projects": 399}),
    )


KITS: dict[str, Callable[[pytest.FixtureRequest, Path], Kit]] = {
    "pgbase": _pgbase,
    "postgres": _postgres,
    "sqlite": _sqlite,
    "directory": _directory,
    "command": _command,
}


def test_kits_cover_every_registered_kind() -> None:
    assert set(KITS) == set(SOURCES) | set(MODES)


@pytest.fixture(params=sorted(KITS))
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    made = KITS[request.param](request, tmp_path / "service")
    made.seed()
    return made


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    work = tmp_path / "work"
    work.mkdir()
    return Settings(backfleet_work_dir=work)


def back_up(kit: Kit, source: Source) -> tuple[MemoryStore, ArtifactEntry]:
    store = MemoryStore()
    key = artifact_key("app", "2024-05-06t07-08-09", "svc", source.format, "zstd")
    return store, stored_entry(store, source, key=key, service="svc")


@pytest.fixture(autouse=True)
def _service_folder(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()


def test_round_trip_brings_back_what_was_dumped(kit: Kit, settings: Settings) -> None:
    source = make_source(kit.spec, settings)
    original = kit.state()
    store, entry = back_up(kit, source)
    assert entry.source.get("kind", kit.spec.kind) == kit.spec.kind
    kit.spoil()
    assert kit.state() != original

    restore_artifact(store=store, entry=entry, source=restore_source(kit.spec, entry, settings))

    assert kit.state() == original


def test_a_corrupt_artifact_leaves_the_target_untouched(kit: Kit, settings: Settings) -> None:
    store, entry = back_up(kit, make_source(kit.spec, settings))
    kit.spoil()
    before = kit.state()
    data = bytearray(store.objects[entry.key])
    data[len(data) // 2] ^= 0x01
    store.objects[entry.key] = bytes(data)

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=restore_source(kit.spec, entry, settings))

    assert kit.state() == before


def test_verify_runs_before_anything_is_committed(kit: Kit, settings: Settings) -> None:
    """Every byte is the real dump, only verify() refuses it (the manifest's digest
    differs): the source has read the whole stream and still must not commit."""
    store, entry = back_up(kit, make_source(kit.spec, settings))
    kit.spoil()
    before = kit.state()
    wrong = entry.model_copy(update={"sha256": "0" * 64})

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=wrong, source=restore_source(kit.spec, wrong, settings))

    assert kit.state() == before


def test_the_kinds_restore_test_check(kit: Kit, settings: Settings, tmp_path: Path) -> None:
    """Into a scratch target (never the service's own), then the kind's check: it passes on
    what was recorded and fails on facts the restored data does not match."""
    cls = source_class(kit.spec.kind)  # a mode's drill is its kind's (pgbase: postgres)
    store, entry = back_up(kit, make_source(kit.spec, settings))
    kit.spoil()
    before = kit.state()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    target = cls.restore_test_target(kit.spec, scratch)
    assert cls.restore_test_unavailable(kit.spec) is None  # every kit's service can be drilled
    assert target is not None
    with target as restore:
        # As operations/restore_test.py does: a base backup through a scratch server.
        destination = drill_source(restore.target, entry, settings)
        restore_artifact(store=store, entry=entry, source=destination)
        (facts,) = checked_facts(destination, [entry.source])
        restore.check([facts])
        wrong = copy.deepcopy(dict(facts))
        kit.tamper(wrong)
        with pytest.raises(IntegrityError):
            restore.check([wrong])
    assert kit.state() == before  # the service's own data was not touched
