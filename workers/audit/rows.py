"""A batch's events read back as blocks of raw lines, each block of one UTC date.

A raw line is `<JSON line>\\t<event id>\\n`, in id order (the index's order, so
the database produces rows while the worker consumes them). The database
writes the JSON line itself (workers.audit.catalog.line_sql).

PostgreSQL: one cheap query finds where the date changes along the ids, then
`psql` runs COPY and its stdout is read in large blocks, cut at those places
with bytes.find: no Python per row (libpq hands a COPY over one row per call,
which costs more than all the rest; psql is on every worker's PATH already).
Without psql, psycopg's COPY, IDS_PER_COPY ids at a time (libpq buffers what
the server sends ahead of the reader; a bounded range bounds that). COPY's text
format doubles every backslash, and nothing else in these lines (the JSON has
no raw control characters): the writer undoes it. The password goes to psql
in PGPASSWORD, never on its command line.
SQLite: rows through SQLAlchemy, grouped into blocks.
"""

import shutil
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta

from workers.audit import catalog
from workers.audit.layout import DAY_MS
from workers.catalog.db import Engine, session_scope
from workers.child_env import libpq_env
from workers.errors import TransientError
from workers.redact import redact
from workers.sources.process import StderrTail, stop

PIPE_READ = 1024 * 1024
IDS_PER_COPY = 20_000  # ~10 MiB of lines: what libpq may hold ahead of this process
ROWS_PER_FETCH = 5000
BLOCK_BYTES = 256 * 1024
EPOCH = date(1970, 1, 1)


def blocks(
    engine: Engine, database_url: str, namespace: str, after: int, through: int
) -> Iterator[tuple[date, bytes]]:
    if engine.dialect.name == "postgresql":
        yield from _postgres_blocks(engine, namespace, after, through)
    else:
        yield from _row_blocks(engine, database_url, namespace, after, through)


def _postgres_blocks(
    engine: Engine, namespace: str, after: int, through: int
) -> Iterator[tuple[date, bytes]]:
    starts = catalog.day_starts(engine, namespace=namespace, after=after, through=through)
    if not starts:
        return
    next_run = 1
    day = EPOCH + timedelta(days=starts[0][1])
    for block in _complete_lines(_copy_out(engine, namespace, after, through)):
        # Cut the block where the next run of another date starts, if it is in it.
        while next_run < len(starts):
            run_id, run_day = starts[next_run]
            at = block.find(b"\t%d\n" % run_id)
            if at < 0:
                break
            begin = block.rfind(b"\n", 0, at) + 1
            if begin:
                yield day, block[:begin]
            block = block[begin:]
            day = EPOCH + timedelta(days=run_day)
            next_run += 1
        if block:
            yield day, block


def _copy_out(engine: Engine, namespace: str, after: int, through: int) -> Iterator[bytes]:
    psql = shutil.which("psql")
    if psql is None:
        yield from _copy_out_psycopg(engine, namespace, after, through)
        return
    # Here, not at the top: a worker with a SQLite catalog never loads psycopg.
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(engine.url.set(drivername="postgresql").render_as_string(False))
    password = str(params.pop("password", "") or "")
    env = libpq_env(password)  # not the worker's secrets
    command = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", make_conninfo("", **params)]
    command += ["-c", catalog.copy_lines_sql(engine, namespace=namespace, low=after, high=through)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    errors = StderrTail(process.stderr)
    try:
        assert process.stdout is not None
        while chunk := process.stdout.read(PIPE_READ):
            yield chunk
        if process.wait() != 0:
            said = errors.text(lambda text: redact(text, [password]))
            raise TransientError(f"psql could not read the user events: {said}")
    finally:
        stop(process)


def _copy_out_psycopg(engine: Engine, namespace: str, after: int, through: int) -> Iterator[bytes]:
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        for low in range(after, through, IDS_PER_COPY):
            high = min(low + IDS_PER_COPY, through)
            statement = catalog.copy_lines_sql(engine, namespace=namespace, low=low, high=high)
            with raw.cursor().copy(statement) as copy:
                for data in copy:
                    yield bytes(data)
        connection.rollback()


def _complete_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream into blocks of at least BLOCK_BYTES ending at a newline."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= BLOCK_BYTES:
            data = b"".join(pending)
            end = data.rfind(b"\n") + 1
            if end:
                yield data[:end]
            pending, size = [data[end:]], len(data) - end
    data = b"".join(pending)
    if data:
        yield data


def _row_blocks(
    engine: Engine, database_url: str, namespace: str, after: int, through: int
) -> Iterator[tuple[date, bytes]]:
    day_number: int | None = None
    lines: list[bytes] = []
    size = 0
    with session_scope(database_url) as session:
        rows = catalog.event_lines(
            session,
            namespace=namespace,
            after=after,
            through=through,
            rows_per_fetch=ROWS_PER_FETCH,
        )
        for event_id, created_at, line in rows:
            number = created_at // DAY_MS
            if lines and (number != day_number or size >= BLOCK_BYTES):
                yield EPOCH + timedelta(days=day_number or 0), b"".join(lines)
                lines, size = [], 0
            day_number = number
            raw = b"%s\t%d\n" % (line.encode(), event_id)
            lines.append(raw)
            size += len(raw)
    if lines:
        yield EPOCH + timedelta(days=day_number or 0), b"".join(lines)
