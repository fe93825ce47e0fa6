"""Shipping user events to the store, each exactly once (tasks.audit.flush_user_events).

Per namespace, in batches of at most `batch_events` events:
1. claim: in one transaction, fix the batch's last id as `pending_through`
   (ids above the shipping horizon, still being inserted, are never claimed);
2. write: stream the batch's events, ordered by (createdAt, id), into gzip
   JSON Lines objects cut at each UTC date and at `file_bytes` uncompressed
   bytes; each object is stored, read back and its SHA-256 compared;
3. commit: `shipped_through = pending_through`, in one transaction.

A flush that dies anywhere redoes the claimed batch: the same events in the
same order make the same objects under the same keys (gzip with no timestamp),
so an object is at worst rewritten with identical bytes, never duplicated, and
no event is skipped. Memory is one object's compressed bytes plus a window of rows.
"""

import hashlib
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

from workers.audit import catalog
from workers.audit.layout import day_of, object_key
from workers.audit.lines import line_of
from workers.catalog.db import session_scope
from workers.catalog.models import UserEvent
from workers.errors import IntegrityError
from workers.stores.base import ObjectStore

log = logging.getLogger(__name__)

GZIP_LEVEL = 6
GZIP_WBITS = 31  # a gzip header with no file name and mtime 0: the same events, the same bytes
ROWS_PER_FETCH = 5000
READ_CHUNK = 1024 * 1024


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
    """One object being written: its day, id range and compressed bytes so far."""

    day: date
    first_id: int
    last_id: int = 0
    events: int = 0
    raw_bytes: int = 0
    compressor: "zlib._Compress" = field(
        default_factory=lambda: zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
    )
    chunks: list[bytes] = field(default_factory=list)

    def add(self, event_id: int, line: bytes) -> None:
        self.first_id = min(self.first_id, event_id)
        self.last_id = max(self.last_id, event_id)
        self.events += 1
        self.raw_bytes += len(line)
        self.chunks.append(self.compressor.compress(line))

    def finish(self) -> bytes:
        self.chunks.append(self.compressor.flush())
        return b"".join(self.chunks)


def flush_user_events(
    *,
    store: ObjectStore,
    database_url: str,
    limits: ShipLimits = ShipLimits(),
    namespace: str | None = None,
) -> FlushResult:
    """Ship every event committed before this call; returns what was shipped."""
    with session_scope(database_url) as session:
        horizon = catalog.shipping_horizon(session)
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
        in_range = (
            select(UserEvent.id)
            .where(
                UserEvent.namespace == namespace,
                UserEvent.id > state.shipped_through,
                UserEvent.id <= horizon,
            )
            .order_by(UserEvent.id)
        )
        last = session.scalar(in_range.offset(batch_events - 1).limit(1))
        if last is None:  # fewer than a full batch left: take them all
            last = session.scalar(in_range.order_by(None).order_by(UserEvent.id.desc()).limit(1))
        if last is None:
            return None
        state.pending_through = last
        return state.shipped_through, last


def _rows(
    database_url: str, namespace: str, after: int, through: int
) -> Iterator[tuple[int, int, bytes]]:
    """(id, createdAt, line) of the batch's events, by (createdAt, id)."""
    columns = (
        UserEvent.id,
        UserEvent.created_at,
        UserEvent.op_type,
        UserEvent.name_hints,
        UserEvent.user_email,
        UserEvent.customer_name,
        UserEvent.response_code,
        UserEvent.request_params,
        UserEvent.request_payload,
        UserEvent.latency_ms,
    )
    query = (
        select(*columns)
        .where(UserEvent.namespace == namespace, UserEvent.id > after, UserEvent.id <= through)
        .order_by(UserEvent.created_at, UserEvent.id)
        .execution_options(yield_per=ROWS_PER_FETCH)
    )
    with session_scope(database_url) as session:
        for row in session.execute(query):
            line = line_of(
                op_type=row.op_type,
                created_at=row.created_at,
                name_hints=row.name_hints,
                user_email=row.user_email,
                customer_name=row.customer_name,
                response_code=row.response_code,
                request_params=row.request_params,
                request_payload=row.request_payload,
                latency_ms=row.latency_ms,
            )
            yield row.id, row.created_at, (line + "\n").encode()


def _write_batch(
    store: ObjectStore,
    database_url: str,
    namespace: str,
    after: int,
    through: int,
    limits: ShipLimits,
) -> tuple[list[str], int]:
    keys: list[str] = []
    events = 0
    current: _Object | None = None

    def close(obj: _Object) -> None:
        key = object_key(namespace, obj.day, obj.first_id, obj.last_id)
        store_confirmed(store, key, obj.finish())
        keys.append(key)

    for event_id, created_at, line in _rows(database_url, namespace, after, through):
        day = day_of(created_at)
        if current is not None and (
            current.day != day
            or current.raw_bytes + len(line) > limits.file_bytes
            or current.events >= limits.batch_events
        ):
            close(current)
            current = None
        if current is None:
            current = _Object(day=day, first_id=event_id)
        current.add(event_id, line)
        events += 1
    if current is not None:
        close(current)
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
