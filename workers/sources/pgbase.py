"""PostgreSQL with `pitr = true`: physical base backups, artifact format `pgbase`.

Dump: `pg_basebackup -D - -Ft -X fetch --checkpoint=fast` writes the whole cluster as
one tar on stdout (PostgreSQL refuses `-X stream` to stdout: `fetch` adds the WAL the
backup needs at its end, in pg_wal/, so the tar alone restores), through the usual
pipeline: parallel parts, resume, bounded memory. Its facts are read from the tar as
it passes (sources/pgbase_facts.py): system identifier, timeline, start and end LSN
(the consistent point), with the server's version, the bootstrap superuser's name (a
restore connects to the scratch server as it) and the clock before and after
(`end_time` is no earlier than the consistent point).

No per-table row counts: a base backup is not a snapshot any live transaction sees
(its files are copied while the server writes, made consistent by replaying WAL up to
`end_lsn`), so counts taken on the server would not be the backup's. A drill counts
in the scratch server the restore starts, at the consistent point, and compares the
restored target with that (workers/pitr/base_restore.py).

Restore: a base backup is a whole cluster's data directory. It is restored through a
scratch PostgreSQL started on it and a dump of the service's database from there
(workers/pitr/base_restore.py, at the operations' level): this class refuses to
restore by itself.

The password never appears on a command line (libpq's PGPASSWORD, workers.child_env).
"""

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from workers.errors import ConfigError, SourceError
from workers.services_config import ServiceSpec
from workers.sources import PGBASE
from workers.sources.base import Dump, RestoreStream
from workers.sources.pg_server import server_programs
from workers.sources.pgbase_facts import BaseBackupTar
from workers.sources.postgres import PostgresSource
from workers.sources.process import StderrTail, exit_status, spawn, stop_group
from workers.timestamps import utcnow

# After its tar ends, pg_basebackup only syncs (nothing, on a pipe) and exits.
EXIT_WAIT = 120.0
_BOOTSTRAP_SUPERUSER = "SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10"
_CAN_REPLICATE = (
    "SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
)


class PgBaseSource(PostgresSource):
    format: ClassVar[str] = PGBASE

    def _argv(self) -> list[str]:
        # -w: never ask for a password (libpq has it, or the server does not want one).
        return [
            "pg_basebackup",
            "-d",
            self._conninfo(),
            "-D",
            "-",
            "-Ft",
            "-X",
            "fetch",
            "--checkpoint=fast",
            "--label=backfleet",
            "-w",
        ]

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        with self._connect() as conn:
            facts: dict[str, Any] = {
                "kind": self.kind,
                "database": self.database,
                "server_version": _scalar(conn, "SHOW server_version"),
                "superuser": _scalar(conn, _BOOTSTRAP_SUPERUSER),
            }
        facts["start_time"] = utcnow().isoformat()
        process = spawn(
            self._argv(), env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
        )
        errors = StderrTail(process.stderr)
        assert process.stdout is not None
        stream = _Finishing(BaseBackupTar(process.stdout), process, errors, self, facts)
        try:
            yield Dump(stream=stream, facts=facts)
        except BaseException:
            stop_group(process)
            raise
        finally:
            process.stdout.close()
        if not stream.finished:  # the pipeline stopped reading before the end
            stop_group(process)
            raise SourceError("the base backup was not read to its end")

    def restore(self, stream: RestoreStream) -> None:
        raise SourceError(
            "a base backup (pgbase) is restored through a scratch PostgreSQL "
            "(workers.pitr.base_restore), not by the source itself"
        )

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        """pg_basebackup and the dump tools installed; the role may replicate; WAL kept
        for replicas (wal_level is not `minimal`, max_wal_senders above 0)."""
        for tool in ("pg_basebackup", "pg_dump", "pg_restore", "psql"):
            if shutil.which(tool) is None:
                raise ConfigError(f"{tool} is not installed")
        assert spec.url is not None
        source = cls(spec.url, password_env=spec.password_env, env=spec.env or ())
        with source.connect() as conn:
            version = _scalar(conn, "SHOW server_version")
            may_replicate = _scalar(conn, _CAN_REPLICATE) == "True"
            wal_level = _scalar(conn, "SHOW wal_level")
            senders = int(_scalar(conn, "SHOW max_wal_senders"))
        if not may_replicate:
            raise ConfigError(
                "pitr = true: the service's role needs the REPLICATION attribute "
                "(ALTER ROLE … REPLICATION) and a `replication` line in pg_hba.conf"
            )
        if wal_level == "minimal" or senders < 1:
            raise ConfigError(
                f"pitr = true: the server has wal_level = {wal_level} and max_wal_senders = "
                f"{senders}; base backups need wal_level = replica (or logical) and "
                "max_wal_senders of at least 2"
            )
        here = _restorable_here(version)
        return f"PostgreSQL {version} reachable; base backups possible (REPLICATION); {here}"


def _restorable_here(version: str) -> str:
    """Whether this host could restore them: a scratch server of the same major."""
    major = version.split(".", 1)[0].split(" ", 1)[0]
    if not major.isdigit():
        return "its major version is unknown"
    try:
        server_programs(int(major))
    except ConfigError:
        return (
            f"no PostgreSQL {major} server on this host: restores and drills of it need one "
            f"(postgresql-{major})"
        )
    return f"restorable here (PostgreSQL {major} server found)"


class _Finishing:
    """pg_basebackup's stdout; at its end, the tool's exit is awaited and the facts filled
    in, before the pipeline reads the facts (so a failed backup is never stored)."""

    def __init__(
        self,
        tar: BaseBackupTar,
        process: "subprocess.Popen[bytes]",
        errors: StderrTail,
        source: PgBaseSource,
        facts: dict[str, Any],
    ) -> None:
        self.tar, self.process, self.errors = tar, process, errors
        self.source, self.facts = source, facts
        self.finished = False

    def read(self, size: int = -1, /) -> bytes:
        data = self.tar.read(size)
        if not data and not self.finished:
            self._finish()
        return data

    def _finish(self) -> None:
        try:
            returncode = self.process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            stop_group(self.process)
            returncode = self.process.wait()
        if returncode != 0:
            complaint = self.errors.text(self.source._clean)
            raise SourceError(f"pg_basebackup failed ({exit_status(returncode)}): {complaint}")
        self.facts.update(self.tar.facts())
        self.facts["end_time"] = utcnow().isoformat()
        self.finished = True


def _scalar(conn: Any, query: str) -> str:
    row = conn.execute(query).fetchone()
    if row is None:
        raise SourceError(f"the server answered nothing to {query!r}")
    return str(row[0])
