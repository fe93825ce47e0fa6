"""A base backup (artifact format `pgbase`) restored into a live PostgreSQL database.

    stored bytes -> unpacked into a scratch data folder -> verify() (SHA-256 of every
    stored byte) -> scratch PostgreSQL recovers to the consistent point (or, given WAL
    and a target time, to that moment) -> pg_dump -Fc of the service's database ->
    PostgresSource.restore of the target: one transaction, swapped in or left untouched

So the target gets the same faithful restore a dump gets, and nothing of a corrupt
artifact: the scratch server starts only after verify() passed, and the dump's last
chunk is held back until pg_dump exited cleanly and the stored bytes were verified
(with the namespace-lock gate the restore path adds), so no COMMIT comes earlier.

`BaseBackupRestore` is the Source a restore or a drill hands the stream to
(pitr/restore_source.py picks it); the sources layer's PgBaseSource (which makes base
backups) cannot restore them by itself, since the scratch server belongs to this
package (see workers/sources/pgbase.py).
"""

import logging
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

from workers.child_env import child_env
from workers.errors import IntegrityError, SourceError
from workers.pitr.replay import Replay, read_replay
from workers.pitr.scratch import Recovery, ScratchPostgres, ScratchServer
from workers.pitr.unpack import unpack_base_backup
from workers.settings import Settings
from workers.sources import PGBASE, Source
from workers.sources.base import Dump, OneStream, RestoreStream
from workers.sources.pg_server import server_programs
from workers.sources.pgbase import PgBaseSource
from workers.sources.postgres import PostgresSource, row_counts
from workers.sources.postgres_roles import read_roles
from workers.sources.process import StderrTail, exit_status, spawn, stop_group

log = logging.getLogger(__name__)

# After its output ends, pg_dump only closes its connection.
DUMP_EXIT_WAIT = 120.0
ENDED_EARLY = "recovery ended before configured recovery target was reached"
PrepareScratch = Callable[[ScratchPostgres], None]


class BaseBackupRestore(OneStream):
    """Restores a base backup into `target` (a service's database, or a drill's scratch
    database) through a scratch server; `scratch_counts` are the rows per table the scratch
    server held at the recovery's end (what a drill compares the target with); `replay`
    where a recovery to a moment ended (pitr/replay.py: what a drill judges it by)."""

    kind: ClassVar[str] = "postgres"
    format: ClassVar[str] = PGBASE

    def __init__(
        self,
        target: PostgresSource,
        facts: Mapping[str, Any],
        *,
        settings: Settings,
        timeout: float | None = None,
        recovery: Recovery | None = None,
        prepare: PrepareScratch | None = None,
    ) -> None:
        if isinstance(target, PgBaseSource) or not isinstance(target, PostgresSource):
            raise SourceError("a base backup restores only into a PostgreSQL database")
        self.target, self.facts = target, dict(facts)
        self.root = settings.pitr_scratch_dir
        self.timeout = timeout if timeout is not None else settings.pitr_scratch_timeout_seconds
        self.recovery = recovery
        self.prepare = prepare  # e.g. WAL segments into scratch.wal_dir, before the start
        self.scratch_counts: dict[str, int] = {}
        self.replay: Replay | None = None

    def dump(self) -> AbstractContextManager[Dump]:
        raise SourceError("a base backup restore target cannot be backed up")

    def restore(self, stream: RestoreStream) -> None:
        major = _major(self.facts)
        if major is not None:
            server_programs(major)  # no server of that version: say so before reading a byte
        database = str(self.facts.get("database") or self.target.database)
        with ScratchPostgres(root=self.root, timeout=self.timeout) as scratch:
            unpack_base_backup(stream, scratch.data)
            stream.verify()  # every stored byte matched before a server reads any of them
            if self.prepare is not None:
                self.prepare(scratch)
            users = [str(self.facts.get("superuser") or ""), self._target_user(), "postgres"]
            server = self._start(scratch, users)
            superuser = self._check(server, database)
            with _scratch_dump(server, database, superuser, stream) as dump:
                # The cluster's roles, as a dump's preamble carries them: a restore into a
                # cluster that lacks them creates them first (sources/postgres_roles.py).
                dump.preamble = self._roles(server, database, superuser)
                self.target.restore(dump)

    def _start(self, scratch: ScratchPostgres, users: list[str]) -> ScratchServer:
        """The scratch server, recovered. A target time later than the WAL's last commit
        ends the recovery with ENDED_EARLY (PostgreSQL 14+): the WAL fetched holds every
        commit up to the target (it reaches a point written after it, pitr/wal_fetch.py)
        and none after it (else the replay would have stopped there), so replaying all of
        it is the state at the target: the same server starts again without a target.
        (Finding the last commit's time instead would need pg_waldump or a connection,
        which a server in recovery refuses.)"""
        wanted = self.recovery.target_time if self.recovery is not None else None
        try:
            server = scratch.start(users=users, recovery=self.recovery)
            end_of_wal = False
        except SourceError:
            if wanted is None or not scratch.log_says(ENDED_EARLY):
                raise
            log.info("the WAL ends before any commit after %s: replaying all of it", wanted)
            scratch.stop()
            server = scratch.start(users=users, recovery=Recovery(end_of_wal=True))
            end_of_wal = True
        if wanted is not None:
            with server.connect() as conn:
                self.replay = read_replay(conn, scratch.log_text(), end_of_wal=end_of_wal)
        return server

    def _target_user(self) -> str:
        return str(self.target.connection_user() or "")

    def _check(self, server: ScratchServer, database: str) -> str:
        """The scratch is the backed-up cluster and holds the database; its superuser."""
        with server.connect() as conn:
            row = conn.execute(
                "SELECT (SELECT rolname FROM pg_roles WHERE oid = 10),"
                " (SELECT system_identifier::text FROM pg_control_system()),"
                " (SELECT count(*) FROM pg_database WHERE datname = %s)",
                (database,),
            ).fetchone()
        assert row is not None
        superuser, system_identifier, present = str(row[0]), str(row[1]), int(row[2])
        recorded = self.facts.get("system_identifier")
        if recorded is not None and str(recorded) != system_identifier:
            raise IntegrityError(
                f"the base backup is of cluster {system_identifier}, the manifest says {recorded}"
            )
        if not present:
            raise SourceError(f"the base backup holds no database {database!r}")
        with server.connect(database, superuser) as conn:
            self.scratch_counts = row_counts(conn)
        return superuser

    def _roles(self, server: ScratchServer, database: str, superuser: str) -> bytes:
        with server.connect(database, superuser) as conn:
            return read_roles(conn, passwords=self.target.keeps_role_passwords).to_bytes()


class _ScratchDump:
    """pg_dump's output from the scratch server; verify() waits for its clean exit, then
    runs the stored stream's verify() again (its lock gate at the moment of COMMIT)."""

    def __init__(
        self, process: "subprocess.Popen[bytes]", errors: StderrTail, stored: RestoreStream
    ) -> None:
        self.process, self.errors, self.stored = process, errors, stored
        self.preamble: bytes | None = None  # the roles (sources.base.preamble_of reads it)

    def read(self, size: int = -1, /) -> bytes:
        assert self.process.stdout is not None
        return self.process.stdout.read(size)

    def verify(self) -> None:
        assert self.process.stdout is not None
        if self.process.stdout.read(1):
            raise SourceError("the scratch dump was not read to its end")
        try:
            returncode = self.process.wait(DUMP_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            stop_group(self.process)
            returncode = self.process.wait()
        if returncode != 0:
            raise SourceError(
                f"pg_dump of the scratch server failed ({exit_status(returncode)}): "
                f"{self.errors.text()}"
            )
        self.stored.verify()


@contextmanager
def _scratch_dump(
    server: ScratchServer, database: str, superuser: str, stored: RestoreStream
) -> Iterator[_ScratchDump]:
    # The pg_dump of the scratch server's version; no PG* variable of the worker's.
    pg_dump = str(server.programs.pg_dump or "pg_dump")
    argv = [pg_dump, "-Fc", "-Z0", "-d", server.conninfo(database, superuser)]
    process = spawn(argv, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    errors = StderrTail(process.stderr)
    try:
        yield _ScratchDump(process, errors, stored)
    finally:
        stop_group(process)
        if process.stdout is not None:
            process.stdout.close()


def _major(facts: Mapping[str, Any]) -> int | None:
    """The major version of the server the backup was taken of (`15.4 (Debian…)` -> 15)."""
    version = str(facts.get("server_version") or "")
    digits = version.split(".", 1)[0].split(" ", 1)[0]
    return int(digits) if digits.isdigit() else None


def through_scratch(
    target: Source,
    facts: Mapping[str, Any],
    settings: Settings,
    *,
    timeout: float | None = None,
) -> BaseBackupRestore:
    """`target` (a PostgreSQL database) fed from a base backup through a scratch server."""
    if not isinstance(target, PostgresSource):
        raise SourceError(
            f"a base backup restores only into a PostgreSQL database, not {target.kind}"
        )
    return BaseBackupRestore(target, facts, settings=settings, timeout=timeout)
