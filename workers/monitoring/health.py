"""The fleet's health from the catalog: each service's freshness against its own policy,
verdicts, open alerts.

Shared by the staleness check (alerts), `/metrics` and `backfleet status`.
The recovery point of a backup is its timestamp (when it started), so a
backup's age is measured from there.

Freshness is judged per service: its newest successful backup holding its
artifact (a full, onlyConfig or per-schedule backup alike) against its max_age
(service_max_age). A namespace is stale when any of its services is. A service
with no successful backup yet is not stale until its first scheduled run after
the fleet first saw it (a catalog row, so restarts change nothing; or its earliest
backup that listed it, if older) was due, plus a grace of BACKUP_MAX_AGE (its
max_age, when shorter): a fresh install does not alert before its first backups
were due, and an upgrade does not make a service that has been failing fresh.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from workers.catalog import queries, reports, services_seen
from workers.catalog.db import Session, session_scope
from workers.fleet import Fleet
from workers.timestamps import longest_gap, next_run, parse_timestamp, utcnow


@dataclass(frozen=True)
class Freshness:
    namespace: str
    service: str | None  # None: the namespace as a whole (stale when any service is)
    last_success: str | None  # timestamp of the newest successful backup (holding the service)
    age: float | None  # seconds since then; None: never
    stale: bool
    max_age: int | None = None  # seconds: the service's limit (None for a namespace)
    due_by: datetime | None = None  # no backup yet: when it turns stale

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
    services: list[Freshness] = field(default_factory=list)  # each against its own max_age


def schedule_of(fleet: Fleet, namespace: str, service: str) -> str:
    """The cron the service is backed up on: its own, else REGULAR_BACKUP_SCHEDULE."""
    own = fleet.config.services_of(namespace)[service].schedule
    return own or fleet.settings.regular_backup_schedule


def service_max_age(fleet: Fleet, namespace: str, service: str) -> int:
    """Seconds the service's newest successful backup may be old: its `max_age`, else
    BACKUP_MAX_AGE; for a service with a schedule of its own and no `max_age`, the
    longest gap between two runs of that schedule plus BACKUP_MAX_AGE as grace (a
    weekly service: 7 days + 2 h at the defaults)."""
    policy = fleet.config.policy_of(namespace, service, fleet.settings)
    if policy.max_age is not None:
        return policy.max_age
    gap = longest_gap(schedule_of(fleet, namespace, service))
    return fleet.settings.max_age_seconds + (gap or 0)


def freshness(fleet: Fleet, *, now: datetime | None = None) -> list[Freshness]:
    """Every configured namespace, then each of its services, against their policies."""
    now = now or utcnow()
    found: list[Freshness] = []
    with session_scope(fleet.settings.database_url) as session:
        for namespace in sorted(fleet.config.namespaces):
            names = sorted(fleet.config.services_of(namespace))
            seen = services_seen.first_seen(
                session, namespace=namespace, services=names, moment=now
            )
            services = [_judge(fleet, session, namespace, name, seen[name], now) for name in names]
            stamp = reports.last_success(session, namespace=namespace)
            found.append(
                Freshness(
                    namespace,
                    None,
                    stamp,
                    _age(stamp, now),
                    any(item.stale for item in services),
                )
            )
            found.extend(services)
    return found


def _judge(
    fleet: Fleet,
    session: Session,
    namespace: str,
    service: str,
    first_seen: datetime,
    now: datetime,
) -> Freshness:
    limit = service_max_age(fleet, namespace, service)
    stamp = reports.last_success(session, namespace=namespace, service=service)
    age = _age(stamp, now)
    if age is not None:
        return Freshness(namespace, service, stamp, age, age > limit, limit)
    # Backups that listed it (failed ones) may predate the sightings (migration 0011).
    listed = services_seen.first_listed(session, namespace=namespace, service=service)
    seen = first_seen if listed is None else min(first_seen, listed)
    cron = schedule_of(fleet, namespace, service)
    first_due = next_run(cron, seen) if longest_gap(cron) is not None else seen
    due_by = first_due + timedelta(seconds=min(limit, fleet.settings.max_age_seconds))
    return Freshness(namespace, service, None, None, now > due_by, limit, due_by)


def _age(stamp: str | None, now: datetime) -> float | None:
    return None if stamp is None else (now - parse_timestamp(stamp)).total_seconds()


def span(seconds: float) -> str:
    """A duration for people: `7 d 2 h`, `2 h`, `90 min` becomes `1 h 30 min`."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (mins, "min")) if n]
    return " ".join(parts) or f"{seconds:g} s"


def namespace_health(fleet: Fleet, *, now: datetime | None = None) -> list[NamespaceHealth]:
    judged = freshness(fleet, now=now)
    report = []
    with session_scope(fleet.settings.database_url) as session:
        for namespace in sorted(fleet.config.namespaces):
            mine = [item for item in judged if item.namespace == namespace]
            last = queries.latest_backup(session, namespace=namespace)
            check = reports.latest_verification(session, namespace=namespace)
            alerts = reports.open_alert_count(session, namespace=namespace)
            report.append(
                NamespaceHealth(
                    namespace=namespace,
                    last_backup=last.timestamp if last else None,
                    last_status=last.status if last else None,
                    last_success=reports.last_success(session, namespace=namespace),
                    stale=any(item.stale for item in mine),
                    last_verified=check.status if check else None,
                    last_verified_at=check.checked_at if check else None,
                    open_alerts=int(alerts or 0),
                    next_backup=next_backup(fleet, namespace, now=now),
                    services=[item for item in mine if item.service is not None],
                )
            )
    return report


def next_backup(fleet: Fleet, namespace: str, *, now: datetime | None = None) -> datetime | None:
    """When beat next emits a backup of the namespace, on any of its schedules (the
    regular one and the services' own); None unless ENABLE_REGULAR_BACKUPS."""
    if not fleet.settings.enable_regular_backups:
        return None
    now = now or utcnow()
    crons = fleet.config.services_by_cron(namespace, fleet.settings.regular_backup_schedule)
    return min((next_run(cron, now) for cron in crons), default=None)
