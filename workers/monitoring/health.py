"""The fleet's health from the catalog: freshness against the RPO, verdicts, open alerts.

Shared by the staleness check (alerts), `/metrics` and `backfleet status`.
The recovery point of a backup is its timestamp (when it started), so a
backup's age is measured from there.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from workers.catalog import queries, reports
from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.timestamps import parse_cron, parse_timestamp, utcnow


@dataclass(frozen=True)
class Freshness:
    namespace: str
    service: str | None  # None: the namespace as a whole
    last_success: str | None  # timestamp of the newest successful backup (holding the service)
    age: float | None  # seconds since then; None: never
    stale: bool

    @property
    def condition(self) -> str:
        suffix = f":{self.service}" if self.service else ""
        return f"backup.stale:{self.namespace}{suffix}"


@dataclass(frozen=True)
class NamespaceHealth:
    namespace: str
    last_backup: str | None
    last_status: str | None
    last_success: str | None
    stale: bool
    last_verified: str | None  # the newest verification's verdict, and when
    last_verified_at: datetime | None
    open_alerts: int
    next_backup: datetime | None  # None: no regular backups are scheduled


def freshness(fleet: Fleet, *, now: datetime | None = None) -> list[Freshness]:
    """Every configured namespace, and each of its services, against BACKUP_MAX_AGE."""
    now = now or utcnow()
    limit = fleet.settings.max_age_seconds
    found: list[Freshness] = []
    with session_scope(fleet.settings.database_url) as session:
        for namespace in sorted(fleet.config.namespaces):
            stamp = reports.last_success(session, namespace=namespace)
            found.append(_judge(namespace, None, stamp, now, limit))
            for service in sorted(fleet.config.services_of(namespace)):
                stamp = reports.last_success(session, namespace=namespace, service=service)
                found.append(_judge(namespace, service, stamp, now, limit))
    return found


def _judge(
    namespace: str, service: str | None, stamp: str | None, now: datetime, limit: int
) -> Freshness:
    age = None if stamp is None else (now - parse_timestamp(stamp)).total_seconds()
    return Freshness(namespace, service, stamp, age, age is None or age > limit)


def namespace_health(fleet: Fleet, *, now: datetime | None = None) -> list[NamespaceHealth]:
    stale = {f.namespace for f in freshness(fleet, now=now) if f.stale}
    report = []
    with session_scope(fleet.settings.database_url) as session:
        for namespace in sorted(fleet.config.namespaces):
            last = queries.latest_backup(session, namespace=namespace)
            check = reports.latest_verification(session, namespace=namespace)
            alerts = reports.open_alert_count(session, namespace=namespace)
            report.append(
                NamespaceHealth(
                    namespace=namespace,
                    last_backup=last.timestamp if last else None,
                    last_status=last.status if last else None,
                    last_success=reports.last_success(session, namespace=namespace),
                    stale=namespace in stale,
                    last_verified=check.status if check else None,
                    last_verified_at=check.checked_at if check else None,
                    open_alerts=int(alerts or 0),
                    next_backup=next_backup(fleet, namespace, now=now),
                )
            )
    return report


def next_backup(fleet: Fleet, namespace: str, *, now: datetime | None = None) -> datetime | None:
    """When beat next emits a backup of the namespace, on any of its schedules (the
    regular one and the services' own); None unless ENABLE_REGULAR_BACKUPS."""
    if not fleet.settings.enable_regular_backups:
        return None
    now = now or utcnow()
    moments = []
    for cron in fleet.config.services_by_cron(namespace, fleet.settings.regular_backup_schedule):
        schedule = parse_cron(cron)
        schedule.nowfun = lambda: now  # measured from `now`, not from the wall clock
        # Celery's estimate lands a hair before the minute: round up to it.
        moment: datetime = now + schedule.remaining_estimate(now) + timedelta(seconds=1)
        moments.append(moment.replace(second=0, microsecond=0))
    return min(moments, default=None)
