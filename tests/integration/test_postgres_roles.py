"""A PostgreSQL backup keeps its cluster's roles; a restore into another cluster creates them.

Two private clusters of the tests' own (roles are cluster-wide: the shared server is
never touched): A is backed up, B lacks A's roles. Role names carry a per-test suffix,
so the tests share the clusters without depending on each other.
"""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fakes import entry_of
from tests.secret_scan import leaks
from tests.servers import PrivatePostgres, started
from workers.errors import ConfigError, IntegrityError, SourceError
from workers.repository.manifest import ArtifactEntry
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources import postgres as postgres_module
from workers.sources.postgres import PostgresSource
from workers.sources.postgres_roles import RolePlan
from workers.stores.memory import MemoryStore
from workers.transfer import crypto
from workers.transfer.download import restore_artifact
from workers.transfer.parts import TransferOptions
from workers.transfer.upload import StoredArtifact, upload_artifact

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
KEY = "app/2023-02-02t17-03-15/postgres.pgdump.zst"


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PrivatePostgres, PrivatePostgres]]:
    a = started(PrivatePostgres())
    try:
        b = started(PrivatePostgres())
        try:
            yield a, b
        finally:
            b.close()
    finally:
        a.close()


def run(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)  # type: ignore[arg-type]


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def one(url: str, query: str) -> Any:
    found = rows(url, query)
    return found[0][0] if found else None


def url_as(server: PrivatePostgres, user: str, database: str) -> str:
    return f"postgresql://{user}@127.0.0.1:{server.port}/{database}"


class Names:
    """One test's role names: `names.owner` is `owner_<suffix>`."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:8]

    def __getattr__(self, name: str) -> str:
        return f"{name}_{self.suffix}"


def seed(a: PrivatePostgres, names: Names) -> str:
    """A database in A whose objects are owned by and granted to custom roles."""
    n = names
    run(
        a.admin_url,
        f"""
        CREATE ROLE {n.owner} LOGIN PASSWORD 'owner-pw-{n.suffix}' CONNECTION LIMIT 5
          VALID UNTIL '2099-01-02 03:04:05+00';
        CREATE ROLE {n.readers} NOLOGIN;
        COMMENT ON ROLE {n.readers} IS 'read-only ''staff''';
        CREATE ROLE {n.alice} LOGIN PASSWORD 'alice-pw-{n.suffix}' CREATEDB;
        GRANT {n.readers} TO {n.alice} WITH ADMIN OPTION;
        ALTER ROLE {n.alice} SET search_path = "$user", app, public;
        ALTER ROLE {n.alice} SET work_mem = '8MB';
        """,
    )
    url = a.create_database(f"db_{n.suffix}")
    run(url, f"ALTER ROLE {n.owner} IN DATABASE db_{n.suffix} SET statement_timeout = '5s'")
    run(
        url,
        f"""
        CREATE SCHEMA app AUTHORIZATION {n.owner};
        CREATE TABLE app.items (id int PRIMARY KEY, name text);
        INSERT INTO app.items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
        ALTER TABLE app.items OWNER TO {n.owner};
        GRANT USAGE ON SCHEMA app TO {n.readers};
        GRANT SELECT ON app.items TO {n.readers};
        """,
    )
    return url


def back_up(
    url: str, store: MemoryStore, *, identity: Any = None, passwords: bool = False
) -> tuple[StoredArtifact, ArtifactEntry]:
    source = PostgresSource(url, role_passwords=passwords, encrypted=identity is not None)
    stored = upload_artifact(
        store=store,
        key=KEY,
        open_dump=source.dump,
        options=TransferOptions(part_size=1 << 20, identity=identity),
    )
    return stored, entry_of(stored, service="postgres", fmt="pgdump")


def role(url: str, name: str) -> dict[str, Any] | None:
    found = rows(
        url,
        "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolconnlimit,"
        " to_json(rolvaliduntil) #>> '{}', rolpassword IS NULL, rolpassword,"
        f" shobj_description(oid, 'pg_authid') FROM pg_authid WHERE rolname = '{name}'",
    )
    if not found:
        return None
    keys = ["super", "inherit", "createrole", "createdb", "login", "connlimit", "valid_until"]
    keys += ["no_password", "password", "comment"]
    return dict(zip(keys, found[0], strict=True))


def settings_of(url: str, name: str) -> list[tuple[str | None, list[str]]]:
    return rows(
        url,
        "SELECT d.datname, s.setconfig FROM pg_db_role_setting s "
        "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
        f"JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = '{name}' ORDER BY 1 NULLS FIRST",
    )


def members_of(url: str, group: str) -> list[tuple[str, bool]]:
    return rows(
        url,
        "SELECT m.rolname, a.admin_option FROM pg_auth_members a "
        "JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
        f"WHERE g.rolname = '{group}' ORDER BY 1",
    )


def test_a_new_cluster_gets_the_roles_then_their_ownership_and_grants(
    clusters: tuple[PrivatePostgres, PrivatePostgres], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = clusters
    n = Names()
    store = MemoryStore()
    stored, entry = back_up(seed(a, n), store)
    # The manifest (and the catalog) says how many, never who nor any hash.
    assert stored.facts["roles"]["hashes"] is False
    assert stored.facts["roles"]["count"] >= 4 and stored.facts["roles"]["memberships"] >= 1
    assert not any(name in json.dumps(stored.facts) for name in (n.owner, n.readers, n.alice))

    target = b.create_database(f"db_{n.suffix}")
    caplog.set_level("INFO")
    restore_artifact(store=store, entry=entry, source=PostgresSource(target))

    assert role(target, n.owner) == {
        "super": False,
        "inherit": True,
        "createrole": False,
        "createdb": False,
        "login": True,
        "connlimit": 5,
        "valid_until": "2099-01-02T03:04:05+00:00",
        "no_password": True,  # passwords were not asked for
        "password": None,
        "comment": None,
    }
    alice = role(target, n.alice)
    assert alice is not None and alice["createdb"] and alice["no_password"]
    readers = role(target, n.readers)
    assert readers is not None and readers["comment"] == "read-only 'staff'"
    assert not readers["login"]
    assert members_of(target, n.readers) == [(n.alice, True)]
    assert settings_of(target, n.alice) == [
        (None, ['search_path="$user", app, public', "work_mem=8MB"])
    ]
    assert settings_of(target, n.owner) == [(f"db_{n.suffix}", ["statement_timeout=5s"])]
    # The data landed with its ownership and grants, which name the created roles.
    assert one(target, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == n.owner
    assert one(target, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'")
    assert one(
        target, f"SELECT has_table_privilege('{n.alice}', 'app.items', 'SELECT')"
    )  # through the membership
    assert one(target, "SELECT count(*) FROM app.items") == 100
    assert n.owner in caplog.text  # said which roles it created

    # Restored again: every role exists now, nothing is created.
    caplog.clear()
    restore_artifact(store=store, entry=entry, source=PostgresSource(target))
    assert "creating the roles" not in caplog.text


def test_roles_the_target_has_are_left_exactly_as_they_are(
    clusters: tuple[PrivatePostgres, PrivatePostgres],
) -> None:
    a, b = clusters
    n = Names()
    url = seed(a, n)
    run(a.admin_url, f"CREATE ROLE {n.bob} LOGIN; GRANT {n.readers} TO {n.bob};")
    store = MemoryStore()
    _, entry = back_up(url, store)

    # B has its own owner (other attributes, its own password) and alice (in no group).
    run(
        b.admin_url,
        f"CREATE ROLE {n.owner} LOGIN CREATEDB CONNECTION LIMIT 1 PASSWORD 'b-own-{n.suffix}';"
        f"CREATE ROLE {n.alice} NOLOGIN; ALTER ROLE {n.alice} SET work_mem = '1MB';",
    )
    before = role(b.admin_url, n.owner), role(b.admin_url, n.alice)
    target = b.create_database(f"db_{n.suffix}")
    restore_artifact(store=store, entry=entry, source=PostgresSource(target))

    assert (role(b.admin_url, n.owner), role(b.admin_url, n.alice)) == before
    assert settings_of(target, n.alice) == [(None, ["work_mem=1MB"])]
    # readers and bob were missing: created, bob in readers; alice existed: not made a member.
    assert members_of(target, n.readers) == [(n.bob, False)]
    assert one(target, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == n.owner


def test_password_hashes_only_when_asked_encrypted_and_never_in_a_message(
    clusters: tuple[PrivatePostgres, PrivatePostgres],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = clusters
    n = Names()
    url = seed(a, n)
    store = MemoryStore()
    with pytest.raises(ConfigError, match="BACKUP_ENCRYPTION_KEY"):
        back_up(url, store, passwords=True)  # unencrypted: refused before a connection

    keyring = crypto.Keyring.from_settings(Settings(backup_encryption_key=crypto.generate_key()))
    caplog.set_level("DEBUG")
    stored, entry = back_up(url, store, identity=keyring.current, passwords=True)
    assert stored.facts["roles"]["hashes"] is True
    hashes = {
        "owner's hash": one(
            a.admin_url, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{n.owner}'"
        ),
        "alice's hash": one(
            a.admin_url, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{n.alice}'"
        ),
    }
    assert all(value.startswith("SCRAM-SHA-256$") for value in hashes.values())

    target = b.create_database(f"db_{n.suffix}")
    restore_artifact(store=store, entry=entry, source=PostgresSource(target), keyring=keyring)
    owner, alice = role(target, n.owner), role(target, n.alice)
    assert owner is not None and owner["password"] == hashes["owner's hash"]
    assert alice is not None and alice["password"] == hashes["alice's hash"]

    # A statement psql refuses is never echoed (terse errors, and the hashes are masked).
    owner_hash = hashes["owner's hash"]
    statement = f"CREATE ROLE {n.carol} PASSWORD '{owner_hash}' NOT VALID SQL"
    monkeypatch.setattr(
        postgres_module, "plan_roles", lambda conn, roles: RolePlan((n.carol,), (), (statement,))
    )
    with pytest.raises(SourceError) as failed:
        restore_artifact(store=store, entry=entry, source=PostgresSource(target), keyring=keyring)
    assert "syntax error" in str(failed.value)

    where = {
        "the stored bytes": store.objects[KEY].decode("latin-1"),
        "the manifest entry": entry.model_dump_json(),
        "the logs": caplog.text,
        "the error": str(failed.value),
    }
    assert not leaks(hashes, where)
    # Not even a piece of one (psql shows a window of a failed statement).
    for value in hashes.values():
        for piece in (value.split("$")[2][:16], value[-16:]):
            assert piece not in str(failed.value)


def test_a_failed_restore_leaves_no_role_it_created(
    clusters: tuple[PrivatePostgres, PrivatePostgres],
) -> None:
    a, b = clusters
    n = Names()
    store = MemoryStore()
    _, entry = back_up(seed(a, n), store)
    target = b.create_database(f"db_{n.suffix}")
    run(target, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);")
    data = bytearray(store.objects[KEY])
    data[-40] ^= 0x40  # late: the roles and most of the data went into the transaction
    store.objects[KEY] = bytes(data)

    with pytest.raises((IntegrityError, SourceError)):
        restore_artifact(store=store, entry=entry, source=PostgresSource(target))
    assert all(role(b.admin_url, name) is None for name in (n.owner, n.readers, n.alice))
    assert one(target, "SELECT x FROM keep_me") == 42


def test_a_restorer_without_createrole_is_told_what_to_grant_before_any_change(
    clusters: tuple[PrivatePostgres, PrivatePostgres],
) -> None:
    a, b = clusters
    n = Names()
    store = MemoryStore()
    url = seed(a, n)
    _, entry = back_up(url, store)
    run(b.admin_url, f"CREATE ROLE {n.restorer} LOGIN")
    run(b.admin_url, f"CREATE DATABASE db_{n.suffix} OWNER {n.restorer}")
    target = url_as(b, n.restorer, f"db_{n.suffix}")
    run(target, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (42);")

    with pytest.raises(SourceError, match=f'ALTER ROLE "{n.restorer}" CREATEROLE') as refused:
        restore_artifact(store=store, entry=entry, source=PostgresSource(target))
    assert n.owner in str(refused.value) and n.readers in str(refused.value)
    assert one(target, "SELECT x FROM keep_me") == 42
    assert role(b.admin_url, n.owner) is None

    # With CREATEROLE it creates them, is made a member to hand them the ownership, and
    # the data lands as a superuser's restore would land it.
    run(b.admin_url, f"ALTER ROLE {n.restorer} CREATEROLE")
    restore_artifact(store=store, entry=entry, source=PostgresSource(target))
    assert one(target, "SELECT tableowner FROM pg_tables WHERE tablename = 'items'") == n.owner
    assert members_of(target, n.readers) == [(n.alice, True), (n.restorer, False)]
    assert one(target, "SELECT to_regclass('keep_me')") is None

    # A superuser of the backup cannot be made by a role that is not one: said before any change.
    run(a.admin_url, f"CREATE ROLE {n.root} SUPERUSER")
    try:
        _, entry = back_up(url, store)
    finally:
        run(a.admin_url, f"DROP ROLE {n.root}")
    run(target, "CREATE TABLE keep_me (x int)")
    with pytest.raises(SourceError, match=f"{n.root} are superusers"):
        restore_artifact(store=store, entry=entry, source=PostgresSource(target))
    assert one(target, "SELECT to_regclass('keep_me')::text") == "keep_me"


def test_a_backup_role_that_is_not_a_superuser_keeps_the_roles_and_passwords_only_if_it_may(
    clusters: tuple[PrivatePostgres, PrivatePostgres],
) -> None:
    a, _ = clusters
    n = Names()
    url = seed(a, n)
    # Only what the dump reads: pg_roles and the other catalogs the roles come from are
    # world-readable, pg_authid (the hashes) is not.
    run(a.admin_url, f"CREATE ROLE {n.backup} LOGIN")
    run(url, f"GRANT USAGE ON SCHEMA app TO {n.backup}; GRANT SELECT ON app.items TO {n.backup};")
    as_backup = url_as(a, n.backup, f"db_{n.suffix}")
    stored, _ = back_up(as_backup, MemoryStore())
    assert stored.facts["roles"]["count"] >= 4 and stored.facts["roles"]["hashes"] is False

    keyring = crypto.Keyring.from_settings(Settings(backup_encryption_key=crypto.generate_key()))
    with pytest.raises(SourceError, match="pg_authid"):
        back_up(as_backup, MemoryStore(), identity=keyring.current, passwords=True)
    # pg_read_all_data (PostgreSQL 14+) reads pg_authid too: enough for the hashes.
    run(a.admin_url, f"GRANT pg_read_all_data TO {n.backup}")
    stored, _ = back_up(as_backup, MemoryStore(), identity=keyring.current, passwords=True)
    assert stored.facts["roles"]["hashes"] is True


def test_a_drill_never_creates_a_role_on_the_services_own_server(
    clusters: tuple[PrivatePostgres, PrivatePostgres], tmp_path: Path
) -> None:
    a, _ = clusters
    n = Names()
    url = seed(a, n)
    run(a.admin_url, f"CREATE ROLE {n.gone}")
    run(url, f"CREATE TABLE app.later (x int); ALTER TABLE app.later OWNER TO {n.gone};")
    store = MemoryStore()
    _, entry = back_up(url, store)
    run(url, "DROP TABLE app.later")
    run(a.admin_url, f"DROP ROLE {n.gone}")  # dropped on purpose since the backup

    spec = ServiceSpec(kind="postgres", url=url)
    with (
        PostgresSource.restore_test_target(spec, tmp_path) as scratch,
        pytest.raises(SourceError, match=n.gone),
    ):
        restore_artifact(store=store, entry=entry, source=scratch.target)
    assert role(a.admin_url, n.gone) is None
