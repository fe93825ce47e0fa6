"""The PostgreSQL source against a real server: exact counts, faithful and atomic restores."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.fakes import entry_of
from workers.errors import IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry
from workers.sources.base import Dump
from workers.sources.postgres import PostgresSource
from workers.stores.memory import MemoryStore
from workers.transfer.download import restore_artifact
from workers.transfer.upload import StoredArtifact, store_artifact

pytestmark = pytest.mark.integration
KEY = "app/2023-02-02t17-03-15/postgres.pgdump.zst"

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, feeling mood, photo bytea);
INSERT INTO people (name, feeling, photo)
  SELECT 'person ' || g, 'ok', decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g;
CREATE SCHEMA audit;
CREATE TABLE audit.log (at timestamptz DEFAULT now(), what text);
INSERT INTO audit.log (what) VALUES ('created'), ('named');
CREATE VIEW people_names AS SELECT name FROM people;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $$ SELECT upper(t) $$;
SELECT lo_from_bytea(0, 'a large object');
"""


def execute(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)  # type: ignore[arg-type]


def fetch(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def back_up(url: str, store: MemoryStore) -> tuple[StoredArtifact, ArtifactEntry]:
    stored = store_artifact(
        store=store, key=KEY, source=PostgresSource(url), part_size=1 << 20, compression_level=1
    )
    return stored, entry_of(stored, service="postgres", fmt="pgdump")


def test_round_trip_is_exact_and_later_objects_are_gone(pg_database: str) -> None:
    execute(pg_database, SCHEMA)
    store = MemoryStore()
    stored, entry = back_up(pg_database, store)
    assert stored.facts["row_counts"] == {"audit.log": 2, "public.people": 5000}
    assert "password" not in str(stored.facts)

    execute(
        pg_database,
        "DELETE FROM people WHERE id > 10; INSERT INTO audit.log (what) VALUES ('later');"
        "CREATE TABLE created_later (x int); CREATE SCHEMA later; DROP VIEW people_names;"
        "SELECT lo_from_bytea(0, 'later object');",
    )
    restore_artifact(store=store, entry=entry, source=PostgresSource(pg_database))

    assert fetch(pg_database, "SELECT count(*) FROM people") == 5000
    assert fetch(pg_database, "SELECT count(*) FROM audit.log") == 2
    assert fetch(pg_database, "SELECT to_regclass('public.created_later')") is None
    assert fetch(pg_database, "SELECT count(*) FROM pg_namespace WHERE nspname = 'later'") == 0
    assert fetch(pg_database, "SELECT count(*) FROM people_names") == 5000
    assert fetch(pg_database, "SELECT shout('x')") == "X"
    assert fetch(pg_database, "SELECT count(*) FROM pg_largeobject_metadata") == 1
    assert fetch(
        pg_database, "SELECT md5(string_agg(photo::text, ',' ORDER BY id)) FROM people"
    ) == fetch(
        pg_database,
        "SELECT md5(string_agg(decode(md5(id::text), 'hex')::text, ',' ORDER BY id)) FROM people",
    )


def test_a_tampered_artifact_leaves_the_database_untouched(pg_database: str) -> None:
    execute(pg_database, SCHEMA)
    store = MemoryStore()
    _, entry = back_up(pg_database, store)
    execute(pg_database, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);")
    data = bytearray(store.objects[KEY])
    data[-100] ^= 0x40  # late in the stream: most of the script has already run
    store.objects[KEY] = bytes(data)
    with pytest.raises((IntegrityError, SourceError)):
        restore_artifact(store=store, entry=entry, source=PostgresSource(pg_database))
    assert fetch(pg_database, "SELECT x FROM keep_me") == 42
    assert fetch(pg_database, "SELECT count(*) FROM people") == 5000


class RolelessSource(PostgresSource):
    """Dumps as Backfleet did before it kept the cluster's roles (no preamble)."""

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        with super().dump() as dump:
            dump.facts.pop("roles")
            yield Dump(stream=dump.stream, facts=dump.facts)


def test_a_restore_that_fails_in_sql_rolls_back(pg_database: str) -> None:
    execute(pg_database, "CREATE TABLE t (x int); INSERT INTO t VALUES (1);")
    store = MemoryStore()
    # The dump assigns ownership to a role that will not exist at restore time, and a
    # backup taken before roles were kept cannot create it: the restore fails as it did.
    execute(pg_database, "INSERT INTO t VALUES (2);")
    role = f"gone_{os.getpid()}"
    execute(pg_database, f"CREATE ROLE {role}; ALTER TABLE t OWNER TO {role};")
    stored = store_artifact(
        store=store,
        key=KEY,
        source=RolelessSource(pg_database),
        part_size=1 << 20,
        compression_level=1,
    )
    entry = entry_of(stored, service="postgres", fmt="pgdump")
    execute(
        pg_database,
        f"ALTER TABLE t OWNER TO CURRENT_USER; DROP ROLE {role};INSERT INTO t VALUES (3);",
    )
    with pytest.raises(SourceError, match=role):
        restore_artifact(store=store, entry=entry, source=PostgresSource(pg_database))
    assert fetch(pg_database, "SELECT count(*) FROM t") == 3


def test_no_password_on_any_command_line(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def spy(command: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(command)
        return real_popen(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    monkeypatch.setenv("BF_TEST_PG_PASSWORD", "not-on-argv-9731")
    source = PostgresSource(pg_database, password_env="BF_TEST_PG_PASSWORD")
    store = MemoryStore()
    stored = store_artifact(
        store=store, key=KEY, source=source, part_size=1 << 20, compression_level=1
    )
    assert seen and all("not-on-argv-9731" not in " ".join(cmd) for cmd in seen)
    assert stored.size > 0


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    source = PostgresSource("postgresql://backup:topsecret77@127.0.0.1:9/app?connect_timeout=2")
    with pytest.raises(SourceError) as caught, source.dump():
        pass
    assert "topsecret77" not in str(caught.value)
    assert "cannot connect" in str(caught.value)
