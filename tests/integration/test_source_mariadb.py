"""The command source driving mariadb-dump/mysqldump and mariadb/mysql against a real server."""

import pytest

from tests.fakes import stored_entry
from tests.plugins.mariadb import MariaDBDatabase, client_tool, dump_tool
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry, artifact_key
from workers.sources.command import CommandSource
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact

pytestmark = pytest.mark.integration
EVERY_BYTE = bytes(range(256)).hex()

SCHEMA = f"""
CREATE TABLE people (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(200) NOT NULL,
  photo BLOB NULL,
  note TEXT NULL,
  score DECIMAL(12, 3) NULL,
  seen DATETIME(6) NULL
) ENGINE=InnoDB;
CREATE TABLE audit_log (
  id BIGINT PRIMARY KEY AUTO_INCREMENT,
  what VARCHAR(100) CHARACTER SET latin1 NOT NULL
) ENGINE=InnoDB;
INSERT INTO people (name, photo, note, score, seen) VALUES
  ('plain', X'00', 'hello', 1.5, '2024-01-02 03:04:05.678901'),
  ('unicodé ☃ 日本語 😀', X'{EVERY_BYTE}', NULL, NULL, NULL),
  ('tab\\there\\nnewline \\\\ backslash ''quote'' "double"', NULL, '', -0.001,
   '1970-01-01 00:00:01'),
  ('NULL', X'', 'NULL', 0, NULL);
SET SESSION max_recursive_iterations = 100000;
INSERT INTO people (name, photo, note)
  WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 3000)
  SELECT CONCAT('person ', n), UNHEX(SHA2(n, 256)), IF(n % 3 = 0, NULL, REPEAT('ü', n % 50))
  FROM seq;
INSERT INTO audit_log (what) VALUES ('created'), ('named'), ('café');
CREATE VIEW people_names AS SELECT name FROM people;
CREATE FUNCTION shout(t TEXT) RETURNS TEXT DETERMINISTIC RETURN UPPER(t);
CREATE TRIGGER people_logged AFTER INSERT ON people FOR EACH ROW
  INSERT INTO audit_log (what) VALUES (CONCAT('added ', NEW.id));
"""

# Every value as hex (NULL stays NULL), so the comparison is byte for byte.
ROWS = {
    "people": "SELECT id, HEX(name), HEX(photo), HEX(note), score, seen FROM people ORDER BY id",
    "audit_log": "SELECT id, HEX(what) FROM audit_log ORDER BY id",
}
OBJECTS = """
SELECT table_type, table_name FROM information_schema.tables
  WHERE table_schema = DATABASE() ORDER BY table_name;
SELECT routine_type, routine_name FROM information_schema.routines
  WHERE routine_schema = DATABASE() ORDER BY routine_name;
SELECT trigger_name FROM information_schema.triggers
  WHERE trigger_schema = DATABASE() ORDER BY trigger_name;
"""


def state(database: MariaDBDatabase) -> dict[str, str]:
    result = {name: database.sql(query) for name, query in ROWS.items()}
    result["objects"] = database.sql(OBJECTS)
    return result


def command_source(database: MariaDBDatabase, *databases: str) -> CommandSource:
    connection = database.server.client_args()
    dump = [dump_tool(), *connection, "--single-transaction", "--routines", "--triggers"]
    dump += ["--add-drop-database", "--databases", *(databases or (database.name,))]
    return CommandSource(dump, [client_tool(), *connection], format="sql")


def back_up(store: MemoryStore, source: CommandSource) -> ArtifactEntry:
    key = artifact_key("app", "2023-02-02t17-03-15", "mariadb", source.format, "zstd")
    return stored_entry(store, source, key=key, service="mariadb", part_size=1 << 20)


def spoil(database: MariaDBDatabase) -> None:
    database.sql(
        "DELETE FROM people WHERE id > 10; UPDATE people SET name = 'changed' WHERE id = 2;"
        "UPDATE people SET photo = NULL WHERE id = 1; INSERT INTO people (name) VALUES ('new');"
        "CREATE TABLE created_later (x INT); DROP VIEW people_names; DROP FUNCTION shout;"
    )


def test_round_trip_is_row_for_row_and_later_objects_are_gone(
    mariadb_database: MariaDBDatabase,
) -> None:
    mariadb_database.sql(SCHEMA)
    original = state(mariadb_database)
    assert original["people"].count("\n") == 3004
    assert "F09F9880" in original["people"]  # the emoji, in utf8mb4
    store = MemoryStore()
    source = command_source(mariadb_database)

    entry = back_up(store, source)
    spoil(mariadb_database)
    assert state(mariadb_database) != original
    restore_artifact(store=store, entry=entry, source=source)

    assert state(mariadb_database) == original
    assert mariadb_database.sql("SELECT shout('hi')") == "HI\n"
    assert entry.key.endswith("/mariadb.sql.zst")
    assert entry.source["kind"] == "command"


def test_a_tampered_artifact_leaves_the_database_as_it_is(
    mariadb_database: MariaDBDatabase,
) -> None:
    mariadb_database.sql(SCHEMA)
    store = MemoryStore()
    source = command_source(mariadb_database)
    entry = back_up(store, source)
    spoil(mariadb_database)
    before = state(mariadb_database)
    data = bytearray(store.objects[entry.key])
    data[len(data) // 2] ^= 0x01
    store.objects[entry.key] = bytes(data)

    with pytest.raises(IntegrityError):
        restore_artifact(store=store, entry=entry, source=source)

    assert state(mariadb_database) == before


def test_a_failing_dump_reports_the_tools_message(mariadb_database: MariaDBDatabase) -> None:
    missing = f"{mariadb_database.name}_missing"
    store = MemoryStore()

    with pytest.raises(SourceError, match=rf"failed \(exit 2\): .*Unknown database '{missing}'"):
        back_up(store, command_source(mariadb_database, missing))
    assert store.objects == {} and store.uploads == {}


def test_a_failing_restore_reports_the_tools_message(mariadb_database: MariaDBDatabase) -> None:
    store = MemoryStore()
    entry = back_up(store, CommandSource(["printf", "SELECT * FROM no_such_table;"], ["true"]))
    connection = mariadb_database.server.client_args()
    source = CommandSource(["true"], [client_tool(), *connection, mariadb_database.name])

    with pytest.raises(SourceError, match=r"(?s)failed \(exit 1\): .*ERROR 1146 .*no_such_table"):
        restore_artifact(store=store, entry=entry, source=source)
