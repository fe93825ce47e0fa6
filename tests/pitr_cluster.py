"""A private PostgreSQL cluster for the base-backup tests (never the shared server: a base
backup copies the whole cluster), with a role that may replicate and signs in with a
password (scram), owning the service's database `app`.
"""

import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.servers import PrivatePostgres, started

ROLE = "backfleet_repl"
PASSWORD = "pitr-Secret-" + uuid.uuid4().hex  # must never show on a command line
SEED = """
CREATE SCHEMA billing;
CREATE TABLE projects (id int PRIMARY KEY, name text NOT NULL, owner text);
INSERT INTO projects SELECT g, 'project ' || g, 'user' || (g % 7) FROM generate_series(1, 400) g;
CREATE TABLE billing.invoices (
  id serial PRIMARY KEY, project int REFERENCES projects, total numeric);
INSERT INTO billing.invoices (project, total)
  SELECT g % 400 + 1, g * 1.25 FROM generate_series(1, 900) g;
CREATE VIEW big_invoices AS SELECT * FROM billing.invoices WHERE total > 100;
"""
SPOIL = """
DELETE FROM billing.invoices WHERE id > 100;
UPDATE projects SET name = 'renamed' WHERE id < 50;
DROP VIEW big_invoices;
CREATE TABLE created_later (x int);
INSERT INTO created_later VALUES (1);
"""


class PitrCluster:
    def __init__(self, server: PrivatePostgres) -> None:
        self.server = server
        self.port = server.port

    def url(self, database: str = "app") -> str:
        """The service's URL: the replication role, its password in the URL."""
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        """A new database owned by the role, seeded; its name."""
        name = f"app_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        run(self.url(name), SEED)
        return name

    def system_identifier(self) -> str:
        with psycopg.connect(self.admin()) as conn:
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()")
            return str(row.fetchone()[0])  # type: ignore[index]


def run(url: str, statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)  # type: ignore[arg-type]


def state(url: str) -> Any:
    """Every user table with its rows' digest, and every view: what a restore brings back."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        digests = {}
        for schema, table, kind in tables:
            if kind != "BASE TABLE":
                continue
            query = sql.SQL("SELECT t::text FROM {}.{} AS t ORDER BY 1").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            rows = [row[0] for row in conn.execute(query).fetchall()]
            digests[f"{schema}.{table}"] = (
                len(rows),
                hashlib.sha256("\n".join(rows).encode()).hexdigest(),
            )
    return tables, digests


def scratch_processes(root: Path) -> list[int]:
    """PostgreSQL processes whose command line names a folder under `root`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"postgres" in command and str(root).encode() in command:
            found.append(int(proc.name))
    return found


def _allow_password_sign_in(server: PrivatePostgres) -> None:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute("SET password_encryption = 'scram-sha-256'")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(PASSWORD)
            )
        )
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        # The role signs in with its password, the rest of the cluster stays on trust.
        lines = (
            f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
            f"host replication {ROLE} 127.0.0.1/32 scram-sha-256\n"
        )
        hba.write_text(lines + hba.read_text())
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="module")
def pitr_cluster() -> Iterator[PitrCluster]:
    server = started(PrivatePostgres())
    try:
        _allow_password_sign_in(server)
        yield PitrCluster(server)
    finally:
        server.close()


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A PITR_SCRATCH_DIR the `postgres` OS user reaches when the tests run as root."""
    root = Path(tempfile.mkdtemp(prefix="backfleet-test-pitr-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
