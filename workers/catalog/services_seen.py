"""When the fleet first saw each service. Keyword-only like queries.py; callers own the session.

A service with no successful backup yet is judged from this moment (see
workers/monitoring/health.py), so a fresh install alerts only once the service's
first scheduled run was due. The row survives restarts; it is written the first
time a freshness check, `/metrics` or `backfleet status` looks at the service.
The fleet saw a service no later than its earliest backup that listed it
(`first_listed`): sightings only began with migration 0011, so a service that
failed for weeks before the upgrade was not first seen at the upgrade.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import String, cast, func, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import Backup, ServiceSeen


def first_seen(
    session: Session, *, namespace: str, services: Iterable[str], moment: datetime
) -> dict[str, datetime]:
    """Each service's first sighting; those never seen before are recorded as seen at `moment`."""
    names = sorted(set(services))
    query = select(ServiceSeen).where(
        ServiceSeen.namespace == namespace, ServiceSeen.service.in_(names)
    )
    seen = {row.service: row.first_seen_at for row in session.scalars(query)}
    for name in names:
        if name in seen:
            continue
        try:
            with session.begin_nested():
                session.add(ServiceSeen(namespace=namespace, service=name, first_seen_at=moment))
            seen[name] = moment
        except SQLIntegrityError:  # another process recorded it first: its moment stands
            row = session.get(ServiceSeen, (namespace, name))
            seen[name] = row.first_seen_at if row is not None else moment
    return seen


def first_listed(session: Session, *, namespace: str, service: str) -> datetime | None:
    """When the namespace's earliest backup listing `service` (whatever became of it) was
    created; None if none does."""
    listing = cast(Backup.services, String).contains(f'"{service}"', autoescape=True)
    query = select(func.min(Backup.created_at)).where(Backup.namespace == namespace, listing)
    moment: datetime | None = session.scalar(query)  # UTC-aware: the column's type applies
    return moment
