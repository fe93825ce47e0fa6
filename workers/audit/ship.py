"""Shipping user events to the store, each exactly once (tasks.audit.flush_user_events).

Per namespace, in batches of at most `batch_events` events:
1. claim: in one transaction, fix the batch's last id as `pending_through`
   (ids above the shipping horizon, still being inserted, are never claimed);
2. write: stream the batch's events in id order into gzip JSON Lines objects,
   one per UTC date of the events, cut at `file_bytes` uncompressed bytes;
   each object is stored, read back and its SHA-256 compared
   (workers.audit.rows reads, workers.audit.objects writes);
3. commit: `shipped_through = pending_through`, in one transaction.

One flush at a time ships a namespace (workers.audit.flush_lock): a claimed batch
that is not committed is then always one whose flush died. A flush that dies
anywhere redoes the claimed batch: the same events in the
same order make the same objects under the same keys with the same bytes, so
an object is at worst rewritten identically, never duplicated, and no event is
skipped.
"""

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from workers.audit import catalog
from workers.audit.flush_lock import flush_lock
from workers.audit.objects import BatchWriter
from workers.audit.rows import blocks
from workers.catalog.db import get_engine, session_scope
from workers.stores.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShipLimits:
    batch_events: int = 100_000  # events per watermark step (and at most per object)
    file_bytes: int = 64 * 1024 * 1024  # uncompressed bytes per object


@dataclass
class FlushResult:
    events: int = 0
    batches: int = 0
    objects: list[str] = field(default_factory=list)


def flush_user_events(
    *,
    store: ObjectStore,
    database_url: str,
    limits: ShipLimits = ShipLimits(),
    namespace: str | None = None,
    configured: Collection[str] | None = None,
) -> FlushResult:
    """Ship every event committed before this call; returns what was shipped.

    With `configured` (the fleet's namespaces), events of any other namespace
    stay in the catalog unshipped and unpurged (a namespace taken out of the
    config ships again once it is back): no prefix is ever made for a name
    the fleet does not know.
    """
    with session_scope(database_url) as session:  # the lock it takes ends right here
        horizon = catalog.shipping_horizon(session)
    with session_scope(database_url) as session:
        namespaces = [namespace] if namespace else catalog.namespaces_with_events(session)
    if configured is not None:
        unknown = [name for name in namespaces if name not in configured]
        if unknown:
            log.warning(
                "%d namespace(s) with user events are not configured; their events stay "
                "in the catalog, unshipped",
                len(unknown),
            )
        namespaces = [name for name in namespaces if name in configured]
    result = FlushResult()
    for name in namespaces:
        with flush_lock(database_url, name):  # another flush of it: wait, then ship the rest
            _ship_namespace(store, database_url, name, horizon, limits, result)
    return result


def _ship_namespace(
    store: ObjectStore,
    database_url: str,
    name: str,
    horizon: int,
    limits: ShipLimits,
    result: FlushResult,
) -> None:
    while (batch := _claim_batch(database_url, name, horizon, limits.batch_events)) is not None:
        after, through = batch
        keys, events = _write_batch(store, database_url, name, after, through, limits)
        commit_shipped(database_url, name, through)
        result.batches += 1
        result.events += events
        result.objects.extend(keys)
        log.info(
            "shipped %d user events of %s (ids %d-%d) in %d object(s)",
            events,
            name,
            after + 1,
            through,
            len(keys),
        )


def _claim_batch(
    database_url: str, namespace: str, horizon: int, batch_events: int
) -> tuple[int, int] | None:
    """(shipped_through, pending_through) of the batch to ship now, or None when done."""
    with session_scope(database_url) as session:
        state = catalog.shipping_state(session, namespace=namespace, lock=True)
        if state.pending_through is not None and state.pending_through > state.shipped_through:
            return state.shipped_through, state.pending_through  # a flush died: redo it
        last = catalog.batch_end(
            session,
            namespace=namespace,
            after=state.shipped_through,
            horizon=horizon,
            batch_events=batch_events,
        )
        if last is None:
            return None
        state.pending_through = last
        return state.shipped_through, last


def _write_batch(
    store: ObjectStore,
    database_url: str,
    namespace: str,
    after: int,
    through: int,
    limits: ShipLimits,
) -> tuple[list[str], int]:
    """Stream the batch into objects; returns their keys and the number of events."""
    engine = get_engine(database_url)
    with BatchWriter(
        store,
        namespace,
        file_bytes=limits.file_bytes,
        copy_escaped=engine.dialect.name == "postgresql",
    ) as writer:
        for day, raw in blocks(engine, database_url, namespace, after, through):
            writer.add(day, raw)
        return writer.finish(), writer.events


def commit_shipped(database_url: str, namespace: str, through: int) -> None:
    """Move the namespace's watermark to `through`: its batch is confirmed in the store."""
    with session_scope(database_url) as session:
        state = catalog.shipping_state(session, namespace=namespace, lock=True)
        state.shipped_through = max(state.shipped_through, through)
        if state.pending_through is not None and state.pending_through <= state.shipped_through:
            state.pending_through = None
