"""What the catalog page shows, gathered for one caller: per namespace it may read, each
service's newest good backup and recovery-time evidence, the open alerts, and the recent
backups (the same query and fields as `GET /athena/api/v1/backups`).

A few queries per namespace, whatever the catalog holds; the recovery evidence is
workers/monitoring/recovery.py's, as `backfleet report` and `GET /report/recovery` show it.
"""

from dataclasses import dataclass
from datetime import datetime

from api.schemas import BackupSummary
from workers.api_keys import ApiKey
from workers.catalog import alerts as alert_rows
from workers.catalog import reports
from workers.catalog.db import session_scope
from workers.catalog.listing import BackupFilter, backup_page
from workers.catalog.models import Alert
from workers.fleet import Fleet
from workers.monitoring.recovery import ServiceRecovery, recovery_report
from workers.timestamps import utcnow

RECENT_BACKUPS = 20  # per namespace; `GET /athena/api/v1/backups` pages through the rest


@dataclass(frozen=True)
class AlertView:
    event: str
    namespace: str | None
    service: str | None
    timestamp: str | None
    text: str
    opened_at: datetime

    @classmethod
    def of(cls, row: Alert) -> "AlertView":
        return cls(row.event, row.namespace, row.service, row.timestamp, row.text, row.opened_at)


@dataclass(frozen=True)
class NewestGood:
    """A service's newest successful backup: its timestamp, the service's stored bytes in it,
    and how long the service's artifacts took."""

    timestamp: str
    size: int | None
    seconds: float | None


@dataclass(frozen=True)
class ServiceView:
    recovery: ServiceRecovery  # name, kind, RTO, last drill and its verdict
    newest: NewestGood | None
    open_alerts: int


@dataclass(frozen=True)
class NamespaceView:
    name: str
    services: list[ServiceView]
    alerts: list[AlertView]
    backups: list[BackupSummary]  # newest first
    more: bool  # older backups than those shown match too


@dataclass(frozen=True)
class CatalogView:
    caller: ApiKey
    namespaces: list[NamespaceView]
    fleet_alerts: list[AlertView]  # of no namespace: shown to keys of every namespace only
    service: str | None  # the page shows only this service
    at: datetime


def catalog_view(
    fleet: Fleet, caller: ApiKey, namespaces: list[str], *, service: str | None = None
) -> CatalogView:
    """The page's contents for `namespaces` (already checked against the caller's scope)."""
    recovery = recovery_report(fleet, namespaces=namespaces)
    with session_scope(fleet.settings.database_url) as session:
        newest = {
            (ns, svc): NewestGood(stamp, size, _seconds(started, finished))
            for ns, svc, stamp, size, started, finished in reports.newest_service_successes(session)
            if ns in namespaces
        }
        open_alerts = [
            AlertView.of(row)
            for row in alert_rows.open_alerts_in(
                session, namespaces=namespaces, fleet_wide=caller.namespaces is None
            )
        ]
        views = []
        for namespace in namespaces:
            where = BackupFilter(namespaces=[namespace], service=service)
            page = backup_page(session, where=where, limit=RECENT_BACKUPS)
            backups = [
                BackupSummary.of_listed(
                    listed, url=fleet.store.url_for(namespace, listed.backup.timestamp)
                )
                for listed in page.backups
            ]
            alerts = [
                alert
                for alert in open_alerts
                if alert.namespace == namespace and service in (None, alert.service)
            ]
            services = [
                ServiceView(
                    recovery=item,
                    newest=newest.get((namespace, item.service)),
                    open_alerts=sum(alert.service == item.service for alert in alerts),
                )
                for item in recovery
                if item.namespace == namespace and service in (None, item.service)
            ]
            views.append(NamespaceView(namespace, services, alerts, backups, page.next is not None))
    return CatalogView(
        caller=caller,
        namespaces=views,
        fleet_alerts=[alert for alert in open_alerts if alert.namespace is None],
        service=service,
        at=utcnow(),
    )


def _seconds(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None or finished is None:
        return None
    return (finished - started).total_seconds()
