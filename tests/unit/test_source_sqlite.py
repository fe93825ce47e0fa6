"""SqliteSource through the real pipeline and the in-memory store."""

import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.fakes import BytesSource, stored_entry
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.sources import sqlite as sqlite_module
from workers.sources.base import Source
from workers.sources.sqlite import SqliteSource
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

KEY = artifact_key("app", "2024-01-02t03-04-05", "db", "sqlite", "zstd")
Rows = dict[str, Any]


def backup(store: MemoryStore, source: Source) -> ArtifactEntry:
    return stored_entry(store, source, key=KEY, service="db")


def make_db(path: Path, *, wal: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # keep the rows in the -wal file
    conn.executescript(
        """
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, photo BLOB, score REAL);
        CREATE TABLE "odd ""quoted"" name" (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        CREATE TABLE empty (x);
        CREATE INDEX people_name ON people (name);
        CREATE VIEW top AS SELECT name FROM people WHERE score > 0.5;
        CREATE TRIGGER no_op AFTER INSERT ON empty BEGIN SELECT 1; END;
        """
    )
    people = [(i, f"person {i} ☃", os.urandom(i * 7), i / 300) for i in range(300)]
    conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", people)
    conn.execute("INSERT INTO people VALUES (1000, NULL, ?, NULL)", (os.urandom(3 * 2**20),))
    conn.executemany('INSERT INTO "odd ""quoted"" name" VALUES (?, ?)', [("a", 1), ("b", b"\0")])
    conn.commit()
    return conn


def contents(path: Path) -> Rows:
    """The whole database as data: schema, then every table's rows in a fixed order."""
    with closing(sqlite3.connect(path)) as conn:
        schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY 2")
        result: Rows = {"schema": schema.fetchall()}
        tables = conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'").fetchall()
        for (table,) in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            result[table] = sorted(conn.execute(f"SELECT * FROM {quoted}").fetchall(), key=repr)
    return result


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if "backfleet" in name)


def test_round_trip_is_equal_row_for_row(tmp_path: Path) -> None:
    make_db(tmp_path / "live.db").close()
    store = MemoryStore()

    entry = backup(store, SqliteSource(tmp_path / "live.db", tmp_path))
    restore_artifact(store=store, entry=entry, source=SqliteSource(tmp_path / "copy.db"))

    assert contents(tmp_path / "copy.db") == contents(tmp_path / "live.db")
    counts = {"empty": 0, 'odd "quoted" name': 2, "people": 301}
    assert entry.source == {"kind": "sqlite", "row_counts": counts}
    assert leftovers(tmp_path) == []  # no snapshot, no staged file


def test_wal_database_with_an_open_writer(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    writer = make_db(live, wal=True)
    writer.execute("INSERT INTO empty VALUES ('committed')")
    writer.commit()
    assert os.path.getsize(f"{live}-wal") > 0  # the rows above live in the WAL only
    committed = contents(live)
    writer.execute("INSERT INTO empty VALUES ('not committed')")  # an open transaction
    store = MemoryStore()

    entry = backup(store, SqliteSource(live, tmp_path))
    restore_artifact(store=store, entry=entry, source=SqliteSource(tmp_path / "copy.db"))

    assert contents(tmp_path / "copy.db") == committed
    assert entry.source["row_counts"]["empty"] == 1
    writer.rollback()
    writer.close()


def test_restore_undoes_everything_done_after_the_backup(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    make_db(live, wal=True).close()
    before = contents(live)
    store = MemoryStore()
    entry = backup(store, SqliteSource(live))
    with closing(sqlite3.connect(live)) as conn:
        conn.execute("CREATE TABLE later (x)")
        conn.execute("INSERT INTO later VALUES (1)")
        conn.execute("DELETE FROM people WHERE id < 100")
        conn.execute("UPDATE people SET name = 'changed'")
        conn.commit()
    reader = sqlite3.connect(live)  # open connections see the restored data afterwards
    reader.execute("PRAGMA journal_mode").fetchall()

    restore_artifact(store=store, entry=entry, source=SqliteSource(live))

    assert contents(live) == before
    assert reader.execute("SELECT count(*) FROM people").fetchone() == (301,)
    reader.close()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", [0.1, 0.5, 0.99])
def test_tampered_artifact_leaves_the_target_untouched(tmp_path: Path, where: float) -> None:
    live = tmp_path / "live.db"
    make_db(live).close()
    store = MemoryStore()
    entry = backup(store, SqliteSource(live))
    with closing(sqlite3.connect(live)) as conn:
        conn.execute("INSERT INTO empty VALUES ('after the backup')")
        conn.commit()
    before = digest(live)
    data = bytearray(store.objects[KEY])
    data[int(len(data) * where)] ^= 0x01
    store.objects[KEY] = bytes(data)

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=SqliteSource(live))

    assert digest(live) == before
    assert leftovers(tmp_path) == []


class SqliteBytes(BytesSource):
    """Arbitrary bytes stored as if they were a SQLite dump."""

    kind: ClassVar[str] = "sqlite"
    format: ClassVar[str] = "sqlite"


def test_an_artifact_that_is_not_a_sound_database_is_refused(tmp_path: Path) -> None:
    make_db(tmp_path / "good.db").close()
    good = (tmp_path / "good.db").read_bytes()
    target = tmp_path / "target.db"
    make_db(target).close()
    before = digest(target)

    for data in (b"not a database at all" * 1000, good[: len(good) // 2]):
        store = MemoryStore()
        entry = backup(store, SqliteBytes(data))  # its SHA-256 is right: only SQLite can tell
        with pytest.raises(SourceError, match=r"SQLite database|integrity_check"):
            restore_artifact(store=store, entry=entry, source=SqliteSource(target))
        assert digest(target) == before
    assert leftovers(tmp_path) == []


def test_restore_creates_a_missing_target_and_its_folders(tmp_path: Path) -> None:
    make_db(tmp_path / "live.db").close()
    store = MemoryStore()
    entry = backup(store, SqliteSource(tmp_path / "live.db"))
    target = tmp_path / "new" / "deeper" / "copy.db"

    restore_artifact(store=store, entry=entry, source=SqliteSource(target))

    assert contents(target) == contents(tmp_path / "live.db")
    assert leftovers(target.parent) == []


def test_a_missing_database_is_a_source_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    store = MemoryStore()

    with pytest.raises(SourceError, match="does not exist"):
        backup(store, SqliteSource(missing, tmp_path))

    assert not missing.exists()
    assert store.objects == {} and store.uploads == {}
    assert leftovers(tmp_path) == []


def test_the_snapshot_is_removed_even_when_the_upload_fails(tmp_path: Path) -> None:
    make_db(tmp_path / "live.db").close()
    work = tmp_path / "work"
    work.mkdir()
    source = SqliteSource(tmp_path / "live.db", work)

    with pytest.raises(RuntimeError), source.dump() as dump:
        assert dump.stream.read(100)
        assert os.listdir(work)  # the snapshot exists while it is read
        raise RuntimeError("the store went away")

    assert os.listdir(work) == []


def test_a_wal_target_with_another_page_size_is_refused_clearly(tmp_path: Path) -> None:
    make_db(tmp_path / "live.db").close()
    store = MemoryStore()
    entry = backup(store, SqliteSource(tmp_path / "live.db"))
    target = tmp_path / "target.db"
    with closing(sqlite3.connect(target)) as conn:
        conn.execute("PRAGMA page_size = 1024")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE keep (x)")
        conn.commit()

    with pytest.raises(SourceError, match="page size"):
        restore_artifact(store=store, entry=entry, source=SqliteSource(target))

    assert contents(target)["keep"] == []
    assert leftovers(tmp_path) == []


def test_a_locked_target_gives_up_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_db(tmp_path / "live.db").close()
    store = MemoryStore()
    entry = backup(store, SqliteSource(tmp_path / "live.db"))
    target = tmp_path / "target.db"
    make_db(target).close()
    before = digest(target)
    monkeypatch.setattr(sqlite_module, "LOCK_TIMEOUT", 0.3)
    with closing(sqlite3.connect(target, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")

        with pytest.raises(SourceError, match="locked"):
            restore_artifact(store=store, entry=entry, source=SqliteSource(target))

        holder.execute("ROLLBACK")
    assert digest(target) == before
    assert leftovers(tmp_path) == []
