"""Keyword-only catalog access for user events: insert, watermarks, counts.

Callers own the session and its transaction.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from workers.audit.lines import EventLine
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
    def of_line(cls, namespace: str, line: EventLine) -> "NewEvent":
        return cls(
            namespace=namespace,
            op_type=line.op_type,
            created_at=line.created_at,
            name_hints=tuple(line.name_hints),
            user_email=line.user_email,
            customer_name=line.customer_name,
            response_code=line.response_code,
            request_params=dict(line.request_params),
            request_payload=line.request_payload,
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


def insert_events(session: Session, *, events: Iterable[NewEvent]) -> int:
    """Insert every event in one statement (executemany); returns how many."""
    rows = [event.row() for event in events]
    if rows:
        session.execute(insert(UserEvent), rows)
    return len(rows)


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
