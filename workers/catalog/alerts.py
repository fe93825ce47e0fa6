"""Alert rows: one open row per condition, delivered (or owed) to the webhook.

Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import Alert


def insert_unless_open(session: Session, *, row: Alert) -> bool:
    """Insert the alert; False (nothing inserted) if its condition is open already.

    The database's partial unique index on open conditions decides, atomically.
    """
    try:
        with session.begin_nested():
            session.add(row)
    except SQLIntegrityError:
        return False
    return True


def condition_seen(session: Session, *, condition: str) -> bool:
    """Whether the condition was ever recorded, open or resolved."""
    return session.scalars(select(Alert.id).where(Alert.condition == condition)).first() is not None


def open_alerts(session: Session, *, condition: str) -> Sequence[Alert]:
    query = select(Alert).where(Alert.condition == condition, Alert.resolved_at.is_(None))
    return session.scalars(query).all()


def open_conditions(session: Session, *, prefix: str) -> list[str]:
    """The open conditions whose name starts with `prefix` (taken literally, not a pattern)."""
    query = select(Alert.condition).where(
        Alert.condition.startswith(prefix, autoescape=True),
        Alert.resolved_at.is_(None),
    )
    return list(session.scalars(query))


def owed_alerts(
    session: Session, *, opened_after: datetime, settled_before: datetime, attempts: int
) -> Sequence[Alert]:
    """Undelivered alerts opened after `opened_after` whose own tries are spent (`attempts`
    made) or had time to be (opened before `settled_before`)."""
    query = select(Alert).where(
        Alert.delivered_at.is_(None),
        Alert.opened_at > opened_after,
        (Alert.attempts >= attempts) | (Alert.opened_at < settled_before),
    )
    return session.scalars(query).all()


def open_alerts_in(
    session: Session, *, namespaces: Collection[str], fleet_wide: bool
) -> Sequence[Alert]:
    """The open alerts of `namespaces` (and those of no namespace, when `fleet_wide`),
    oldest first."""
    of_namespaces = Alert.namespace.in_(sorted(namespaces))
    where = or_(of_namespaces, Alert.namespace.is_(None)) if fleet_wide else of_namespaces
    query = (
        select(Alert).where(where, Alert.resolved_at.is_(None)).order_by(Alert.opened_at, Alert.id)
    )
    return session.scalars(query).all()
