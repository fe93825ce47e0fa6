"""The audit trail's catalog module: every query of user events (insert, watermarks,
counts, the batches to ship, purging, the flush lock), and the SQL that writes an event's
JSON line.

The only module of workers/audit/ that builds SQL (the import contract says so): these
queries are tied to the audit's line format and to PostgreSQL's COPY, so they live with
the trail rather than in workers/catalog/. Callers own the session and its transaction.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Engine,
    Table,
    Text,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from workers.audit.layout import DAY_MS
from workers.audit.lines import EventLine, cut_payload
from workers.catalog.db import compact_json
from workers.catalog.models import UserEvent, UserEventShipping


@dataclass(frozen=True)
class NewEvent:
    """One event to record, in the catalog's terms."""

    namespace: str
    op_type: str
    created_at: int  # epoch ms
    name_hints: Sequence[str] = ()
    user_email: str = ""
    customer_name: str = ""
    response_code: int = 200
    request_params: Mapping[str, str] = field(default_factory=dict)
    request_payload: str = ""
    latency_ms: int = 0

    @classmethod
    def of_line(
        cls, namespace: str, line: EventLine, *, user_email: str = "", customer_name: str = ""
    ) -> "NewEvent":
        """The event of a validated line; the defaults fill an empty userEmail/customerName."""
        return cls(
            namespace=namespace,
            op_type=line.op_type,
            created_at=line.created_at,
            name_hints=tuple(line.name_hints),
            user_email=line.user_email or user_email,
            customer_name=line.customer_name or customer_name,
            response_code=line.response_code,
            request_params=dict(line.request_params),
            request_payload=cut_payload(line.request_payload),
            latency_ms=line.latency_ms,
        )

    def row(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "op_type": self.op_type,
            "created_at": self.created_at,
            "name_hints": list(self.name_hints),
            "user_email": self.user_email,
            "customer_name": self.customer_name,
            "response_code": self.response_code,
            "request_params": dict(self.request_params),
            "request_payload": self.request_payload,
            "latency_ms": self.latency_ms,
        }


COPY_COLUMNS = (
    "namespace",
    "op_type",
    "created_at",
    "name_hints",
    "user_email",
    "customer_name",
    "response_code",
    "request_params",
    "request_payload",
    "latency_ms",
)


def insert_events(session: Session, *, events: Iterable[NewEvent]) -> int:
    """Insert every event in the session's transaction; returns how many.

    PostgreSQL gets one COPY (about 10x faster than a pipelined INSERT per row,
    measured); SQLite an executemany.
    """
    batch = list(events)
    if not batch:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        statement = f"COPY user_events ({', '.join(COPY_COLUMNS)}) FROM STDIN"
        with raw.cursor().copy(statement) as copy:  # type: ignore[union-attr]
            for e in batch:
                copy.write_row(
                    (
                        e.namespace,
                        e.op_type,
                        e.created_at,
                        compact_json(list(e.name_hints)),
                        e.user_email,
                        e.customer_name,
                        e.response_code,
                        compact_json(dict(e.request_params)),
                        e.request_payload,
                        e.latency_ms,
                    )
                )
    else:
        table = cast(Table, UserEvent.__table__)
        session.execute(insert(table), [event.row() for event in batch])
    return len(batch)


def shipping_horizon(session: Session) -> int:
    """The highest event id below which no insert is still in flight.

    PostgreSQL hands out ids before the inserting transaction commits, so a
    committed id 101 may be visible while id 100 is not yet. A SHARE lock waits
    for every transaction that is inserting (and holds new inserts back for a
    moment): after it, every id up to the maximum is committed. SQLite has one
    writer at a time, so ids are committed in order there. The lock ends with
    the caller's transaction: commit soon.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE user_events IN SHARE MODE"))
    return int(session.scalar(select(func.coalesce(func.max(UserEvent.id), 0))) or 0)


def shipping_state(session: Session, *, namespace: str, lock: bool = False) -> UserEventShipping:
    """The namespace's watermark row, made (at 0) when missing."""
    query = select(UserEventShipping).where(UserEventShipping.namespace == namespace)
    if lock:
        query = query.with_for_update()
    state = session.scalars(query).first()
    if state is None:
        state = UserEventShipping(namespace=namespace, shipped_through=0)
        session.add(state)
        session.flush()
    return state


def namespaces_with_events(session: Session) -> list[str]:
    """Every namespace that has events in the catalog."""
    query = select(UserEvent.namespace).distinct().order_by(UserEvent.namespace)
    return list(session.scalars(query))


def unshipped_by_namespace(session: Session) -> dict[str, int]:
    """Unshipped events per namespace (the audit backlog metric)."""
    watermark = func.coalesce(UserEventShipping.shipped_through, 0)
    query = (
        select(UserEvent.namespace, func.count())
        .outerjoin(UserEventShipping, UserEventShipping.namespace == UserEvent.namespace)
        .where(UserEvent.id > watermark)
        .group_by(UserEvent.namespace)
    )
    return {namespace: int(count) for namespace, count in session.execute(query)}


def unshipped_event_count(session: Session, *, namespace: str | None = None) -> int:
    """Events recorded but not yet confirmed in the store (for metrics and alerts)."""
    watermark = func.coalesce(UserEventShipping.shipped_through, 0)
    query = (
        select(func.count())
        .select_from(UserEvent)
        .outerjoin(UserEventShipping, UserEventShipping.namespace == UserEvent.namespace)
        .where(UserEvent.id > watermark)
    )
    if namespace is not None:
        query = query.where(UserEvent.namespace == namespace)
    return int(session.scalar(query) or 0)


def batch_end(
    session: Session, *, namespace: str, after: int, horizon: int, batch_events: int
) -> int | None:
    """The id ending the next batch: the `batch_events`th event after `after`, or the last
    one up to `horizon` when fewer are left; None when there is none."""
    in_range = select(UserEvent.id).where(
        UserEvent.namespace == namespace,
        UserEvent.id > after,
        UserEvent.id <= horizon,
    )
    ascending = in_range.order_by(UserEvent.id)
    last = session.scalar(ascending.offset(batch_events - 1).limit(1))
    if last is None:  # fewer than a full batch left: take them all
        last = session.scalar(in_range.order_by(UserEvent.id.desc()).limit(1))
    return last


def watermarks(session: Session) -> list[tuple[str, int]]:
    """(namespace, shipped_through) of every namespace's shipping row."""
    query = select(UserEventShipping.namespace, UserEventShipping.shipped_through)
    return [(namespace, through) for namespace, through in session.execute(query)]


def purge_batch(
    session: Session, *, namespace: str, through: int, before_ms: int, limit: int
) -> int:
    """Delete up to `limit` events of the namespace with ids up to `through` created before
    `before_ms`; returns how many."""
    doomed = (
        select(UserEvent.id)
        .where(
            UserEvent.namespace == namespace,
            UserEvent.id <= through,
            UserEvent.created_at < before_ms,
        )
        .limit(limit)
    )
    ids = list(session.scalars(doomed))
    if ids:
        session.execute(delete(UserEvent).where(UserEvent.id.in_(ids)))
    return len(ids)


@contextmanager
def advisory_lock(engine: Engine, key: int) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock on a connection of its own, held inside."""
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()  # the lock is the session's, not the transaction's
        try:
            yield
        finally:
            # A broken connection has dropped the lock already: keep the flush's own error.
            with suppress(SQLAlchemyError):
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()


def line_sql(dialect: str) -> ColumnElement[str]:
    """A SQL expression giving each user_events row as its JSON line (no newline).

    The database writes the line (the format is workers.audit.lines'), so shipping a
    million events is one streamed query rather than a million JSON encodes in Python.
    Strings are escaped by the database's own JSON functions; the JSON columns are
    stored compact (workers.catalog.db.compact_json), and SQLite's json() minifies them
    anyway.
    """
    E = UserEvent

    def string(column: Any) -> Any:  # a JSON string literal of a text column
        if dialect == "postgresql":
            return sql_cast(func.to_json(column), Text)
        return func.json_quote(column)

    def structure(column: Any) -> Any:  # a JSON column's text (compact)
        return sql_cast(column, Text) if dialect == "postgresql" else func.json(column)

    def number(column: Any) -> Any:
        return sql_cast(column, Text)

    # (key, column, how it is written), in the line's order
    fields: list[tuple[str, Any, Any]] = [
        ("opType", E.op_type, string),
        ("createdAt", E.created_at, number),
        ("nameHints", E.name_hints, structure),
        ("userEmail", E.user_email, string),
        ("customerName", E.customer_name, string),
        ("responseCode", E.response_code, number),
        ("requestParams", E.request_params, structure),
        ("requestPayload", E.request_payload, string),
        ("latencyInMillis", E.latency_ms, number),
    ]
    parts: list[Any] = []
    for index, (key, column, write) in enumerate(fields):
        opener = "{" if index == 0 else ","
        parts += [literal(f'{opener}"{key}":'), write(column)]
    parts.append(literal("}"))
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.op("||")(part)
    return sql_cast(joined, Text)


def _in_batch(namespace: str, after: int, through: int) -> ColumnElement[bool]:
    return (UserEvent.namespace == namespace) & (UserEvent.id > after) & (UserEvent.id <= through)


def day_starts(
    engine: Engine, *, namespace: str, after: int, through: int
) -> list[tuple[int, int]]:
    """(first id, day number) of each run of consecutive ids on one UTC date."""
    day = UserEvent.created_at // DAY_MS
    runs = (
        select(
            UserEvent.id,
            day.label("day"),
            func.lag(day).over(order_by=UserEvent.id).label("previous"),
        )
        .where(_in_batch(namespace, after, through))
        .subquery()
    )
    query = (
        select(runs.c.id, runs.c.day)
        .where(or_(runs.c.previous.is_(None), runs.c.day != runs.c.previous))
        .order_by(runs.c.id)
    )
    with engine.connect() as connection:
        return [(int(first), int(number)) for first, number in connection.execute(query)]


def copy_lines_sql(engine: Engine, *, namespace: str, low: int, high: int) -> str:
    """PostgreSQL's `COPY (...) TO STDOUT` of the batch's rows as `<line>\t<id>`, in id order."""
    query = (
        select(line_sql("postgresql"), UserEvent.id)
        .where(_in_batch(namespace, low, high))
        .order_by(UserEvent.id)
    )
    # Literal values: a namespace is a DNS label and the rest are integers.
    sql = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return f"COPY ({sql}) TO STDOUT"


def event_lines(
    session: Session, *, namespace: str, after: int, through: int, rows_per_fetch: int
) -> Iterator[tuple[int, int, str]]:
    """(id, created_at, JSON line) of the batch's events in id order, fetched in chunks."""
    dialect = session.get_bind().dialect.name
    query = (
        select(UserEvent.id, UserEvent.created_at, line_sql(dialect))
        .where(_in_batch(namespace, after, through))
        .order_by(UserEvent.id)
        .execution_options(yield_per=rows_per_fetch)
    )
    yield from session.execute(query)
