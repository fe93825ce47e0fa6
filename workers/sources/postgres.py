"""PostgreSQL: `pg_dump -Fc -Z0` out, `pg_restore | psql` in one transaction back.

Dump: a REPEATABLE READ transaction exports its snapshot; row counts per table
are taken in it and `pg_dump --snapshot` dumps exactly that state, so the
counts in the manifest are exact. pg_dump's own zlib is 5-7 times slower than
zstd, so it writes uncompressed and the pipeline compresses.

Roles: each dump also reads the cluster's roles and memberships (postgres_roles.py) into
the artifact's preamble; a restore first creates those the target cluster lacks, in the
same transaction as the data, and leaves existing ones as they are.

Restore: psql runs, in ONE transaction, the missing roles, a script that drops every
user schema and large object (so objects created after the backup are gone) and
then pg_restore's --single-transaction script, which pg_restore writes straight
into psql. The last chunk of the dump is held back from pg_restore until the
artifact's SHA-256 is verified, so its final COMMIT cannot come earlier: a
corrupt artifact or any SQL error rolls everything back and the database stays
as it was.

The password never appears on a command line: libpq reads PGPASSWORD, the
environment or `.pgpass`. The tools get only libpq's PG* variables, PATH,
HOME, LANG, TZ and the service's `env` names (workers.child_env).
"""

import logging
import os
import secrets as secrets_module
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from workers.child_env import libpq_env
from workers.errors import ConfigError, SourceError
from workers.redact import redact, strip_connection_strings, url_password_forms
from workers.services_config import ServiceSpec
from workers.services_config.spec import ROLE_PASSWORDS_NEED_ENCRYPTION
from workers.settings import Settings
from workers.sources.base import (
    CHUNK_SIZE,
    Dump,
    OneStream,
    RestoreStream,
    ScratchRestore,
    compare_row_counts,
    preamble_of,
)
from workers.sources.postgres_roles import RolePlan, Roles, plan_roles, read_roles
from workers.sources.process import PolledPipe, StderrTail, stop, wait_for_exit

log = logging.getLogger(__name__)

_LIST_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""

_BEGIN = """
SET client_min_messages = error;
BEGIN;
"""
# After the roles (which the dump's ownerships and grants name), before the data.
_CLEAR = """
DO $backfleet$
DECLARE schema_name text;
BEGIN
  FOR schema_name IN
    SELECT nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema')
      AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
  END LOOP;
END
$backfleet$;
SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
"""

# The public schema as a new database has it (pg_dump omits CREATE SCHEMA public).
_PUBLIC_SCHEMA_15 = """
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
"""
_PUBLIC_SCHEMA_OLD = """
CREATE SCHEMA public;
GRANT ALL ON SCHEMA public TO PUBLIC;
COMMENT ON SCHEMA public IS 'standard public schema';
"""


class PostgresSource(OneStream):
    kind: ClassVar[str] = "postgres"
    format: ClassVar[str] = "pgdump"

    def __init__(
        self,
        url: str,
        *,
        password_env: str | None = None,
        env: Sequence[str] = (),
        secrets: Sequence[str] = (),
        role_passwords: bool = False,
        encrypted: bool = False,
        create_roles: bool = True,
    ) -> None:
        """`role_passwords`: keep the roles' password hashes too, which only an encrypted
        backup (`encrypted`: BACKUP_ENCRYPTION_KEY is set) may hold. `create_roles`: a
        restore creates the backup's roles the cluster lacks (not into a drill's scratch)."""
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:  # libpq's message quotes the URL: say why without it
            raise ConfigError(
                "the service's url is not a valid PostgreSQL URL (percent-encode any "
                "'@', '/', '?', '#', ':' or space in its password)"
            ) from None
        if password_env and os.environ.get(password_env):
            params["password"] = os.environ[password_env]
        self._password = str(params.pop("password", "") or "")
        self._params: dict[str, Any] = params
        self.database = str(params.get("dbname", ""))
        self._env_names = tuple(env)
        self._secrets = [*secrets, *url_password_forms(url)]  # masked in every message
        self._role_passwords, self._encrypted = role_passwords, encrypted
        self._create_roles = create_roles

    @property
    def keeps_role_passwords(self) -> bool:
        """Are the roles' password hashes kept with its backups (`role_passwords`)?"""
        return self._role_passwords

    # --- connection details, kept off every command line ---
    def _conninfo(self) -> str:
        return make_conninfo(**self._params)

    def _env(self) -> dict[str, str]:
        # pg_dump/pg_restore/psql get libpq's settings and the password, not the worker's secrets.
        return libpq_env(self._password, names=self._env_names)

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, settings: Settings, secrets: Sequence[str]
    ) -> "PostgresSource":
        assert spec.url is not None
        return cls(
            spec.url,
            password_env=spec.password_env,
            env=spec.env or (),
            secrets=secrets,
            role_passwords=spec.role_passwords,
            encrypted=settings.backup_encryption_key is not None,
        )

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        for tool in ("pg_dump", "pg_restore", "psql"):
            if shutil.which(tool) is None:
                raise ConfigError(f"{tool} is not installed")
        assert spec.url is not None
        source = cls(spec.url, password_env=spec.password_env, env=spec.env or ())
        with source.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            if spec.role_passwords:
                read_roles(conn, passwords=True)  # SourceError: pg_authid is not readable
        said = "; role passwords readable" if spec.role_passwords else ""
        return f"PostgreSQL {row[0] if row else '?'} reachable{said}"

    @classmethod
    def restore_test_unavailable(cls, spec: ServiceSpec) -> str | None:
        return None  # a scratch database, row counts compared

    @classmethod
    @contextmanager
    def restore_test_target(
        cls, spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
    ) -> Iterator[ScratchRestore]:
        """A scratch database on the service's server (the role needs CREATEDB), dropped
        on exit; its per-table row counts must equal those of the dump's own snapshot."""
        assert spec.url is not None
        source = cls(spec.url, password_env=spec.password_env, env=spec.env or ())
        name = f"backfleet_restore_test_{secrets_module.token_hex(6)}"
        params: dict[str, Any] = conninfo_to_dict(spec.url)
        params["dbname"] = name
        with source.connect() as admin:
            admin.autocommit = True
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            # Roles are cluster-wide: a drill never creates one on the service's own server
            # (a role dropped since the backup stays dropped; the drill says what it lacks).
            target = cls(
                make_conninfo(**params),
                password_env=spec.password_env,
                env=spec.env or (),
                create_roles=False,
            )

            found: dict[str, int] = {}

            def check(facts: Sequence[Mapping[str, Any]]) -> None:
                with target.connect() as conn:
                    found.update(row_counts(conn))
                compare_row_counts(facts[0], found)

            yield ScratchRestore(target, check, found)
        finally:
            with source.connect() as admin:
                admin.autocommit = True
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                admin.execute(drop.format(sql.Identifier(name)))

    def connection_user(self) -> str | None:
        """The role the URL names (None: libpq's default, the OS user or PGUSER)."""
        user = self._params.get("user")
        return str(user) if user else None

    def connect(self) -> psycopg.Connection[Any]:
        """A connection to the database (for checks); SourceError if it cannot be had."""
        return self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._conninfo(), password=self._password or None)
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to {self._describe()}: {self._clean(exc)}") from None

    def _describe(self) -> str:
        host = self._params.get("host", "localhost")
        return f"PostgreSQL database {self.database!r} on {host}"

    def _clean(self, error: object) -> str:
        # libpq may quote the connection string: drop any URL or conninfo form first.
        text = strip_connection_strings(str(error).strip())
        return redact(text, [self._password, *self._secrets])

    # --- dump ---
    @contextmanager
    def dump(self) -> Iterator[Dump]:
        if self._role_passwords and not self._encrypted:
            raise ConfigError(ROLE_PASSWORDS_NEED_ENCRYPTION)
        with self._connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = _scalar(conn, "SELECT pg_catalog.pg_export_snapshot()")
            facts: dict[str, Any] = {
                "kind": self.kind,
                "database": self.database,
                "server_version": _scalar(conn, "SHOW server_version"),
                "row_counts": row_counts(conn),
            }
            # The cluster's roles, in the same snapshot; counts in the manifest, the rest
            # inside the artifact (compressed and encrypted with the data).
            roles = read_roles(conn, passwords=self._role_passwords)
            facts["roles"] = roles.facts()
            command = ["pg_dump", "-Fc", "-Z0", f"--snapshot={snapshot}", "-d", self._conninfo()]
            process = _spawn(command, env=self._env(), stdout=subprocess.PIPE)
            errors = StderrTail(process.stderr)
            assert process.stdout is not None
            try:
                yield Dump(
                    stream=PolledPipe(process.stdout), facts=facts, preamble=roles.to_bytes()
                )
            except BaseException:
                stop(process)
                raise
            finally:
                process.stdout.close()
            if process.wait() != 0:
                raise SourceError(
                    f"pg_dump failed (exit {process.returncode}): {errors.text(self._clean)}"
                )

    # --- restore ---
    def restore(self, stream: RestoreStream) -> None:
        with self._connect() as conn:
            version = int(_scalar(conn, "SHOW server_version_num"))
            plan = self._plan_roles(conn, stream)
        public = _PUBLIC_SCHEMA_15 if version >= 150000 else _PUBLIC_SCHEMA_OLD
        psql = _spawn(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self._conninfo()],
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        psql_errors = StderrTail(psql.stderr)
        assert psql.stdin is not None
        try:
            psql.stdin.write((_BEGIN + plan.script() + _CLEAR + public).encode())
            psql.stdin.flush()
            # pg_restore writes its script straight into psql: no copy through Python.
            self._run_pg_restore(stream, psql.stdin)
            psql.stdin.close()
            if wait_for_exit(psql) != 0:
                raise SourceError(f"restore failed: {psql_errors.text(self._clean)}")
        except BrokenPipeError:
            stop(psql)
            raise SourceError(f"restore failed: {psql_errors.text(self._clean)}") from None
        except BaseException:
            stop(psql)  # psql dies without COMMIT: the server rolls everything back
            raise

    def _plan_roles(self, conn: psycopg.Connection[Any], stream: RestoreStream) -> RolePlan:
        """The roles the target cluster lacks, to create before the data (none for a
        backup taken before roles were kept: it restores as it always did)."""
        preamble = preamble_of(stream)
        if preamble is None or not self._create_roles:
            return RolePlan((), (), ())
        roles = Roles.from_bytes(preamble)
        self._secrets.extend(roles.secrets())  # psql may echo a statement in its error
        try:
            plan = plan_roles(conn, roles)
        except SourceError as exc:
            raise SourceError(self._clean(exc)) from None
        if plan.created:
            log.info(
                "%s: creating the roles the cluster lacks, in the restore's transaction: %s",
                self._describe(),
                ", ".join(plan.created),
            )
        return plan

    def _run_pg_restore(self, stream: RestoreStream, psql_in: IO[bytes]) -> None:
        pg_restore = _spawn(
            ["pg_restore", "--single-transaction", "-f", "-"],
            env=self._env(),
            stdin=subprocess.PIPE,
            stdout=psql_in,
        )
        restore_errors = StderrTail(pg_restore.stderr)
        assert pg_restore.stdin is not None
        try:
            _feed_verified(stream, pg_restore.stdin)
        except BrokenPipeError:
            stop(pg_restore)
            if complaint := restore_errors.text(self._clean):  # else psql broke the pipe
                raise SourceError(f"pg_restore failed: {complaint}") from None
            raise
        except BaseException:
            stop(pg_restore)
            raise
        if wait_for_exit(pg_restore) != 0:
            if complaint := restore_errors.text(self._clean):
                raise SourceError(f"pg_restore failed: {complaint}")
            # Silent (SIGPIPE): psql stopped reading, and its complaint is the one to tell.
            raise BrokenPipeError


def _feed_verified(stream: RestoreStream, restore_in: IO[bytes]) -> None:
    """Feed the dump to pg_restore, holding its last chunk back until verify() has passed.

    pg_restore cannot finish the archive, and so cannot emit the COMMIT that
    ends its --single-transaction script, without that chunk: a stored byte
    that does not match stops the restore before anything is committed.
    """
    with restore_in:
        held = b""
        while chunk := stream.read(CHUNK_SIZE):
            if held:
                restore_in.write(held)
            held = chunk
        stream.verify()
        restore_in.write(held)


def _spawn(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(command, stderr=subprocess.PIPE, **kwargs)
    except FileNotFoundError:
        raise SourceError(
            f"{command[0]} is not installed (install the PostgreSQL client tools)"
        ) from None


def _scalar(conn: psycopg.Connection[Any], query: str) -> str:
    row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return str(row[0])


def row_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows per user table, `schema.table`: what a drill compares."""
    counts: dict[str, int] = {}
    for schema, table in conn.execute(_LIST_TABLES).fetchall():  # type: ignore[arg-type]
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts
