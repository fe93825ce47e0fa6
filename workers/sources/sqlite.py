"""SQLite: an online-backup snapshot out, a verified copy back in through the backup API.

Dump: `sqlite3`'s online backup API copies the live database, in one step (one
read transaction, so the copy is consistent even while writers work), into a
private temporary file; row counts are taken on that snapshot and the file is
streamed. Restore: the stream is staged in a file beside the target, verified,
checked with `PRAGMA integrity_check`, and only then copied INTO the live
target with the backup API, so open connections and WAL files stay coherent
and the target ends row for row as it was at backup time. That copy is one
write transaction: a worker killed during it leaves a hot journal (or
uncommitted WAL frames) that SQLite rolls back on the next open, so the
target is old or new. `recover()` removes the staged files a killed restore left.
"""

import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, ClassVar

from workers.errors import ConfigError, IntegrityError, SourceError
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.sources.base import (
    CHUNK_SIZE,
    Dump,
    OneStream,
    RestoreStream,
    ScratchRestore,
    compare_row_counts,
    iter_chunks,
)

log = logging.getLogger(__name__)

# How long a locked database may keep the backup API waiting before we give up.
LOCK_TIMEOUT = 60.0
_SIDE_FILES = ("-journal", "-wal", "-shm")
_USER_TABLES = (
    "SELECT name, sql FROM sqlite_schema"
    " WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)


class SqliteSource(OneStream):
    kind: ClassVar[str] = "sqlite"
    format: ClassVar[str] = "sqlite"

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, settings: Settings, secrets: Sequence[str]
    ) -> "SqliteSource":
        assert spec.path is not None
        return cls(spec.path, settings.backfleet_work_dir)

    @classmethod
    def probe(cls, spec: ServiceSpec) -> str:
        assert spec.path is not None
        if not spec.path.is_file():
            raise ConfigError(f"{spec.path} does not exist")
        with sqlite3.connect(f"file:{spec.path}?mode=ro", uri=True) as db:
            tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
        return f"SQLite database readable ({tables[0]} tables)"

    @classmethod
    def restore_test_unavailable(cls, spec: ServiceSpec) -> str | None:
        return None  # integrity_check and row counts

    @classmethod
    @contextmanager
    def restore_test_target(
        cls, spec: ServiceSpec, scratch: Path, *, time_limit: float | None = None
    ) -> Iterator[ScratchRestore]:
        """A scratch file: `PRAGMA integrity_check` must pass, row counts must match."""
        target = scratch / "restore-test.sqlite"
        found: dict[str, int] = {}

        def check(facts: Sequence[Mapping[str, Any]]) -> None:
            with closing(sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)) as db:
                verdict = [row[0] for row in db.execute("PRAGMA integrity_check").fetchmany(5)]
                if verdict != ["ok"]:
                    raise IntegrityError(f"integrity_check of the restored database: {verdict}")
                found.update(_row_counts(db))
            compare_row_counts(facts[0], found)

        yield ScratchRestore(cls(target, scratch), check, found)

    def __init__(self, path: Path, work_dir: Path | None = None) -> None:
        self.path = Path(path)
        self.work_dir = work_dir

    @contextmanager
    def dump(self) -> Iterator[Dump]:
        if not self.path.is_file():
            raise SourceError(f"SQLite database {self.path} does not exist (or is not a file)")
        fd, name = tempfile.mkstemp(prefix=".backfleet-dump-", suffix=".sqlite", dir=self.work_dir)
        os.close(fd)
        snapshot = Path(name)
        try:
            facts = self._snapshot(snapshot)
            with snapshot.open("rb", buffering=CHUNK_SIZE) as stream:
                yield Dump(stream=stream, facts=facts)
        finally:
            _remove(snapshot)

    def _snapshot(self, snapshot: Path) -> dict[str, Any]:
        try:
            # mode=ro: a backup never writes to (or creates) the live database.
            with (
                closing(_connect(self.path, "mode=ro")) as live,
                closing(sqlite3.connect(snapshot)) as copy,
            ):
                _backup(live, copy, f"snapshot {self.path}")
            with closing(_connect(snapshot, "immutable=1")) as copy:
                return {"kind": self.kind, "row_counts": _row_counts(copy)}
        except sqlite3.Error as exc:
            raise SourceError(f"could not snapshot SQLite database {self.path}: {exc}") from None

    def restore(self, stream: RestoreStream) -> None:
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=_staging_prefix(target), suffix=".sqlite", dir=target.parent
        )
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(stream):
                    out.write(chunk)
            stream.verify()  # nothing below runs unless every stored byte matched
            with closing(_connect(staged, "immutable=1")) as copy:
                _check_integrity(copy, target)
                self._copy_into(copy, target)
        finally:
            _remove(staged)

    def recover(self) -> None:
        """Remove the staged copies (and side files) a killed restore left beside the target."""
        target = self.path
        if not target.parent.is_dir():
            return
        for name in os.listdir(target.parent):
            if name.startswith(_staging_prefix(target)):
                log.warning("removing %s, left by a restore that was killed", target.parent / name)
                _remove(target.parent / name)

    def _copy_into(self, copy: sqlite3.Connection, target: Path) -> None:
        existed = target.exists()
        try:
            with closing(sqlite3.connect(target, timeout=LOCK_TIMEOUT)) as live:
                _check_page_size(copy, live, target)
                # One step, one write transaction: the target changes all at once or not at all.
                _backup(copy, live, f"restore into {target}")
        except sqlite3.Error as exc:
            if not existed:  # leave no empty database behind where there was none
                _remove(target)
            raise SourceError(f"could not restore SQLite database {target}: {exc}") from None
        except BaseException:
            if not existed:
                _remove(target)
            raise


def _staging_prefix(target: Path) -> str:
    return f".{target.name}.backfleet-restore-"


def _connect(path: Path, options: str) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?{options}", uri=True)


def _backup(src: sqlite3.Connection, dst: sqlite3.Connection, what: str) -> None:
    deadline = time.monotonic() + LOCK_TIMEOUT

    def give_up_when_locked_too_long(status: int, remaining: int, total: int) -> None:
        # Python retries a busy backup forever; a stuck lock must not hang a worker.
        busy = status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
        if busy and time.monotonic() > deadline:
            raise SourceError(f"could not {what}: the database stayed locked for {LOCK_TIMEOUT}s")

    src.backup(dst, pages=-1, progress=give_up_when_locked_too_long)


def _row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, sql in conn.execute(_USER_TABLES).fetchall():
        quoted = '"' + table.replace('"', '""') + '"'
        try:
            counts[table] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
        except sqlite3.OperationalError:
            # A virtual table whose module this Python lacks cannot be counted; its data
            # lives in ordinary shadow tables, which are.
            if not str(sql or "").upper().startswith("CREATE VIRTUAL TABLE"):
                raise
            log.warning("cannot count rows of virtual table %s", table)
    return counts


def _check_integrity(conn: sqlite3.Connection, target: Path) -> None:
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchmany(5)]
    except sqlite3.Error as exc:
        raise SourceError(f"the backup for {target} is not an SQLite database: {exc}") from None
    if result != ["ok"]:
        problems = "; ".join(str(item) for item in result)
        raise SourceError(f"the backup for {target} fails PRAGMA integrity_check: {problems}")


def _check_page_size(copy: sqlite3.Connection, live: sqlite3.Connection, target: Path) -> None:
    # SQLite refuses to change the page size of a WAL database, with a misleading error.
    mode = live.execute("PRAGMA journal_mode").fetchone()[0]
    new, old = (c.execute("PRAGMA page_size").fetchone()[0] for c in (copy, live))
    if str(mode).lower() == "wal" and new != old:
        raise SourceError(
            f"cannot restore into {target}: it is in WAL mode with page size {old}, the backup "
            f"has page size {new}; switch it to journal_mode=DELETE (or remove it) and retry"
        )


def _remove(path: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("could not remove %s%s", path, suffix, exc_info=True)
