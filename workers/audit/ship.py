"""Shipping user events to the store, each exactly once (tasks.audit.flush_user_events).

Per namespace, in batches of at most `batch_events` events:
1. claim: in one transaction, fix the batch's last id as `pending_through`
   (ids above the shipping horizon, still being inserted, are never claimed);
2. write: stream the batch's events in id order into gzip JSON Lines objects,
   one per UTC date of the events, cut at `file_bytes` uncompressed bytes;
   each object is stored, read back and its SHA-256 compared;
3. commit: `shipped_through = pending_through`, in one transaction.

A flush that dies anywhere redoes the claimed batch: the same events in the
same order make the same objects under the same keys (gzip with no timestamp),
so an object is at worst rewritten with identical bytes, never duplicated, and
no event is skipped.

The database writes each line (workers.audit.lines.line_sql); one background
thread compresses (ISA-L) and uploads while the main thread reads the next rows
(compression and the network release the GIL). Memory: at most MAX_OPEN_DAYS objects'
compressed bytes (each from at most `file_bytes` of lines), plus PIPELINE_DEPTH
chunks of CHUNK_BYTES in flight, plus a window of rows.
"""

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

from isal import isal_zlib
from sqlalchemy import Select, select

from workers.audit import catalog
from workers.audit.layout import DAY_MS, day_of, day_start_ms, object_key
from workers.audit.lines import line_sql
from workers.catalog.db import get_engine, session_scope
from workers.catalog.models import UserEvent
from workers.errors import IntegrityError
from workers.stores.base import ObjectStore

log = logging.getLogger(__name__)

# ISA-L's deflate at level 1: 3.5x zlib level 3 (355 against 100 MB/s on these lines, one
# core) for 6.4x compression instead of 7.7x. Plain gzip: any gunzip reads it.
GZIP_LEVEL = 1
GZIP_WBITS = 31  # a gzip header with no file name and mtime 0: the same events, the same bytes
ROWS_PER_FETCH = 5000
IDS_PER_COPY = 20_000  # ~10 MiB of lines: what libpq may hold ahead of this process
CHUNK_BYTES = 1024 * 1024  # lines handed to the compressor at a time
PIPELINE_DEPTH = 4  # chunks or objects waiting for the background thread
READ_CHUNK = 1024 * 1024
MAX_OPEN_DAYS = 4  # objects open at once in a batch whose events span several dates


@dataclass(frozen=True)
class ShipLimits:
    batch_events: int = 100_000  # events per watermark step (and at most per object)
    file_bytes: int = 64 * 1024 * 1024  # uncompressed bytes per object


@dataclass
class FlushResult:
    events: int = 0
    batches: int = 0
    objects: list[str] = field(default_factory=list)


@dataclass
class _Object:
    """One object being written: its date, id range, lines not yet compressed, bytes so far.

    `compress` and `finish` run on the background thread, in submission order.
    """

    day: date
    start_ms: int  # the date's first millisecond
    first_id: int = 0
    last_id: int = 0
    raw_bytes: int = 0
    lines: list[str] = field(default_factory=list)
    pending: int = 0  # characters in `lines`
    compressor: isal_zlib.Compress = field(
        default_factory=lambda: isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS)
    )
    compressed: list[bytes] = field(default_factory=list)

    def compress(self, lines: bytes) -> None:
        self.compressed.append(self.compressor.compress(lines))

    def finish(self) -> bytes:
        self.compressed.append(self.compressor.flush())
        data = b"".join(self.compressed)
        self.compressed.clear()
        return data


class _Pipeline:
    """Ordered work on one background thread, with at most `depth` items waiting."""

    def __init__(self, depth: int = PIPELINE_DEPTH) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-ship")
        self.waiting: deque[Future[None]] = deque()
        self.depth = depth

    def submit(self, work: Callable[[], None]) -> None:
        while len(self.waiting) >= self.depth:
            self.waiting.popleft().result()  # raises the background thread's error here
        self.waiting.append(self.executor.submit(work))

    def wait(self) -> None:
        while self.waiting:
            self.waiting.popleft().result()

    def close(self) -> None:
        for pending in self.waiting:
            pending.cancel()
        self.executor.shutdown(wait=True)


def flush_user_events(
    *,
    store: ObjectStore,
    database_url: str,
    limits: ShipLimits = ShipLimits(),
    namespace: str | None = None,
) -> FlushResult:
    """Ship every event committed before this call; returns what was shipped."""
    with session_scope(database_url) as session:  # the lock it takes ends right here
        horizon = catalog.shipping_horizon(session)
    with session_scope(database_url) as session:
        namespaces = [namespace] if namespace else catalog.namespaces_with_events(session)
    result = FlushResult()
    for name in namespaces:
        while (batch := _claim_batch(database_url, name, horizon, limits.batch_events)) is not None:
            after, through = batch
            keys, events = _write_batch(store, database_url, name, after, through, limits)
            commit_shipped(database_url, name, through)
            result.batches += 1
            result.events += events
            result.objects.extend(keys)
            log.info(
                "shipped %d user events of %s (ids %d-%d) in %d object(s)",
                events, name, after + 1, through, len(keys),
            )  # fmt: skip
    return result


def _claim_batch(
    database_url: str, namespace: str, horizon: int, batch_events: int
) -> tuple[int, int] | None:
    """(shipped_through, pending_through) of the batch to ship now, or None when done."""
    with session_scope(database_url) as session:
        state = catalog.shipping_state(session, namespace=namespace, lock=True)
        if state.pending_through is not None and state.pending_through > state.shipped_through:
            return state.shipped_through, state.pending_through  # a flush died: redo it
        in_range = select(UserEvent.id).where(
            UserEvent.namespace == namespace,
            UserEvent.id > state.shipped_through,
            UserEvent.id <= horizon,
        )
        ascending = in_range.order_by(UserEvent.id)
        last = session.scalar(ascending.offset(batch_events - 1).limit(1))
        if last is None:  # fewer than a full batch left: take them all
            last = session.scalar(in_range.order_by(UserEvent.id.desc()).limit(1))
        if last is None:
            return None
        state.pending_through = last
        return state.shipped_through, last


def _rows(
    database_url: str, namespace: str, after: int, through: int
) -> Iterator[tuple[int, int, str]]:
    """(id, createdAt, JSON line) of the batch's events, in id order.

    Id order follows the index, so the database produces rows while this
    process consumes them (a sort would make it build the whole batch first).
    On PostgreSQL through COPY, which streams without a round trip per FETCH,
    IDS_PER_COPY ids at a time: libpq buffers whatever the server sends ahead
    of the reader, and a bounded range bounds that buffer.
    """
    engine = get_engine(database_url)

    def query(low: int, high: int) -> Select[int, int, str]:
        return (
            select(UserEvent.id, UserEvent.created_at, line_sql(engine.dialect.name))
            .where(UserEvent.namespace == namespace, UserEvent.id > low, UserEvent.id <= high)
            .order_by(UserEvent.id)
        )

    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            for low in range(after, through, IDS_PER_COPY):
                compiled = query(low, min(low + IDS_PER_COPY, through)).compile(
                    dialect=engine.dialect
                )
                statement = f"COPY ({compiled}) TO STDOUT"
                with raw.cursor().copy(statement, compiled.params) as copy:
                    copy.set_types(["int8", "int8", "text"])
                    yield from copy.rows()
            connection.rollback()
        return
    with session_scope(database_url) as session:
        rows = session.execute(query(after, through).execution_options(yield_per=ROWS_PER_FETCH))
        for row in rows:
            yield row[0], row[1], row[2]


class _Writer:
    """The objects of one batch: one open object per UTC date seen, at most MAX_OPEN_DAYS.

    Rows come in id order, so each object holds an increasing run of ids of one
    date, and two objects of a date never overlap: names stay unique. An object
    is closed (compressed to its end, stored, confirmed) when the next event
    would pass `file_bytes`, when more dates are open than allowed (the least
    recently used goes), or at the end of the batch.
    """

    def __init__(self, store: ObjectStore, namespace: str, limits: ShipLimits) -> None:
        self.store, self.namespace, self.limits = store, namespace, limits
        self.pipeline = _Pipeline()
        self.open: dict[date, _Object] = {}  # in order of last use
        self.keys: list[str] = []

    def object_for(self, day: date, size: int) -> "_Object":
        obj = self.open.pop(day, None)
        if obj is not None and obj.raw_bytes + size > self.limits.file_bytes:
            self.close(obj)
            obj = None
        if obj is None:
            if len(self.open) >= MAX_OPEN_DAYS:
                self.close(self.open.pop(next(iter(self.open))))
            obj = _Object(day=day, start_ms=day_start_ms(day))
        self.open[day] = obj  # now the most recently used
        return obj

    def hand_over(self, obj: "_Object") -> None:
        if obj.lines:
            chunk = "".join(obj.lines).encode()
            obj.lines, obj.pending = [], 0
            self.pipeline.submit(lambda: obj.compress(chunk))

    def close(self, obj: "_Object") -> None:
        self.hand_over(obj)
        key = object_key(self.namespace, obj.day, obj.first_id, obj.last_id)
        self.pipeline.submit(lambda: store_confirmed(self.store, key, obj.finish()))
        self.keys.append(key)

    def finish(self) -> list[str]:
        for obj in list(self.open.values()):
            self.close(obj)
        self.open.clear()
        self.pipeline.wait()
        return self.keys


def _write_batch(
    store: ObjectStore,
    database_url: str,
    namespace: str,
    after: int,
    through: int,
    limits: ShipLimits,
) -> tuple[list[str], int]:
    """Stream the batch into objects; returns their keys and the number of events."""
    writer = _Writer(store, namespace, limits)
    events = 0
    current: _Object | None = None
    file_bytes = limits.file_bytes
    try:
        # The hot loop (a million rows a flush): integer compares and list appends.
        for event_id, created_at, line in _rows(database_url, namespace, after, through):
            size = len(line) + 1  # characters; UTF-8 may take more bytes than that
            if (
                current is None
                or not current.start_ms <= created_at < current.start_ms + DAY_MS
                or current.raw_bytes + size > file_bytes
            ):
                current = writer.object_for(day_of(created_at), size)
            if not current.first_id:
                current.first_id = event_id
            current.last_id = event_id
            current.raw_bytes += size
            current.lines.append(line)
            current.lines.append("\n")
            current.pending += size
            if current.pending >= CHUNK_BYTES:
                writer.hand_over(current)
            events += 1
        keys = writer.finish()
    finally:
        writer.pipeline.close()
    return keys, events


def store_confirmed(store: ObjectStore, key: str, data: bytes) -> None:
    """Store `data` at `key`, read it back, and fail unless the SHA-256 matches."""
    expected = hashlib.sha256(data).hexdigest()
    store.put_object(key, data)
    digest = hashlib.sha256()
    with store.open_read(key) as stream:
        while chunk := stream.read(READ_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise IntegrityError(f"{key} reads back with another SHA-256 than was written")


def commit_shipped(database_url: str, namespace: str, through: int) -> None:
    """Move the namespace's watermark to `through`: its batch is confirmed in the store."""
    with session_scope(database_url) as session:
        state = catalog.shipping_state(session, namespace=namespace, lock=True)
        state.shipped_through = max(state.shipped_through, through)
        if state.pending_through is not None and state.pending_through <= state.shipped_through:
            state.pending_through = None
