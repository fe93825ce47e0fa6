"""Alert rows: one open row per condition, and the delivery state of its two messages
(opening, resolution) to the webhook.

Keyword-only like queries.py; callers own the session.
"""

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import Alert

# Delivery states of a message (Alert.delivery, Alert.resolve_delivery).
OWED = "pending"  # to be sent: being tried, or owed to the next check
DELIVERED = "delivered"
NO_WEBHOOK = "none"  # no ALERT_WEBHOOK_URL: recorded (and logged) only
SKIPPED = "skipped"  # an opening that was not delivered before its condition resolved
EXPIRED = "expired"  # still undelivered after the redelivery window: given up


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


def owed_openings(
    session: Session, *, opened_after: datetime, settled_before: datetime, attempts: int
) -> Sequence[Alert]:
    """Opening messages owed: opened after `opened_after`, whose own tries are spent
    (`attempts` made) or had time to be (opened before `settled_before`). A condition that
    resolved is never among them (its opening was SKIPPED or sent); a one-off event (resolved
    as it opened, with no resolution message) is."""
    query = select(Alert).where(
        Alert.delivery == OWED,
        Alert.opened_at > opened_after,
        (Alert.attempts >= attempts) | (Alert.opened_at < settled_before),
        or_(Alert.resolved_at.is_(None), Alert.resolve_delivery.is_(None)),
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


def owed_resolutions(
    session: Session, *, resolved_after: datetime, settled_before: datetime, attempts: int
) -> Sequence[Alert]:
    """Resolution messages owed, on the same terms as owed_openings."""
    query = select(Alert).where(
        Alert.resolve_delivery == OWED,
        Alert.resolved_at > resolved_after,
        (Alert.resolve_attempts >= attempts) | (Alert.resolved_at < settled_before),
    )
    return session.scalars(query).all()


def give_up_owed(session: Session, *, before: datetime, state: str = EXPIRED) -> None:
    """Every message still owed from before `before` (all of them, with `before` now)
    becomes `state`: EXPIRED past the redelivery window, NO_WEBHOOK once none is set."""
    session.execute(
        update(Alert)
        .where(Alert.delivery == OWED, Alert.opened_at <= before)
        .values(delivery=state)
    )
    session.execute(
        update(Alert)
        .where(Alert.resolve_delivery == OWED, Alert.resolved_at <= before)
        .values(resolve_delivery=state)
    )


def listed_alerts(
    session: Session, *, namespace: str | None, resolved_since: datetime | None
) -> Sequence[Alert]:
    """The open alerts, and those resolved since `resolved_since` (None: none of them),
    newest first; of one namespace, or of all."""
    still_open = Alert.resolved_at.is_(None)
    recent = (
        still_open if resolved_since is None else still_open | (Alert.resolved_at >= resolved_since)
    )
    query = select(Alert).where(recent).order_by(Alert.opened_at.desc(), Alert.id.desc())
    if namespace is not None:
        query = query.where(Alert.namespace == namespace)
    return session.scalars(query).all()
