"""Prometheus metrics computed from the catalog at scrape time (and queue depths from Redis).

Nothing is counted in process memory: any API replica answers the same, and
a restart loses nothing. The audit backlog arrives with the audit trail.
"""

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.audit.catalog import unshipped_by_namespace
from workers.catalog import reports
from workers.catalog.db import session_scope
from workers.catalog.models import SUCCESS, Verification
from workers.fleet import Fleet
from workers.monitoring.health import freshness
from workers.monitoring.recovery_metrics import recovery_families
from workers.monitoring.redis_client import REQUEST, redis_client
from workers.monitoring.storage import storage_report
from workers.monitoring.wal_metrics import wal_families
from workers.queues import QUEUES
from workers.timestamps import parse_timestamp

log = logging.getLogger(__name__)

# kombu's Redis transport keeps priorities 3, 6 and 9 in lists of their own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def queue_depths(broker_url: str, timeout: float = REQUEST.socket_timeout) -> dict[str, int] | None:
    """Messages waiting per queue; None when the broker does not answer."""
    profile = replace(REQUEST, connect_timeout=timeout, socket_timeout=timeout)
    try:
        client = redis_client(broker_url, profile)
        with client:
            pipe = client.pipeline()
            for queue in QUEUES:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            counts = pipe.execute()
    except redis.RedisError:
        return None
    step = len(_PRIORITY_SUFFIXES)
    return {q: sum(counts[i * step : (i + 1) * step]) for i, q in enumerate(QUEUES)}


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class CatalogCollector(Collector):
    def __init__(
        self,
        fleet_provider: Callable[[], Fleet],
        depths: Callable[[str], dict[str, int] | None] = queue_depths,
    ) -> None:
        self.fleet_provider, self.depths = fleet_provider, depths

    def collect(self) -> Iterator[Metric]:
        fleet = self.fleet_provider()
        yield from self._backups(fleet)
        yield from self._services(fleet)
        yield from self._sizes(fleet)
        yield from self._storage(fleet)
        yield from self._verifications(fleet)
        yield from self._health(fleet)
        yield from recovery_families(fleet)
        yield from wal_families(fleet)
        yield from self._audit_backlog(fleet)
        yield from self._queues(fleet)

    def _backups(self, fleet: Fleet) -> Iterator[Metric]:
        last_time, duration, size, failures = _success_families(
            "backfleet_backup",
            ["namespace"],
            time_help="Recovery point (start) of the newest successful backup",
            duration_help="How long the newest successful backup took",
            size_help="Stored bytes of the newest successful backup",
            failures_help="Failed backups recorded in the catalog",
        )
        with session_scope(fleet.settings.database_url) as session:
            for row in reports.newest_successes(session):
                labels = [row.namespace]
                last_time.add_metric(labels, parse_timestamp(row.timestamp).timestamp())
                if row.started_at and row.finished_at:
                    spent = (row.finished_at - row.started_at).total_seconds()
                    duration.add_metric(labels, spent)
                size.add_metric(labels, float(row.size or 0))
            for namespace, count in reports.failed_backups(session):
                failures.add_metric([namespace], float(count))
        yield from (last_time, duration, size, failures)

    def _services(self, fleet: Fleet) -> Iterator[Metric]:
        last_time, duration, size, failures = _success_families(
            "backfleet_service",
            ["namespace", "service"],
            time_help="Recovery point of the newest successful backup holding the service",
            duration_help="How long the service's artifacts took in that backup",
            size_help="Stored bytes of the service's artifacts in that backup",
            failures_help="Failed artifacts of the service recorded in the catalog",
        )
        with session_scope(fleet.settings.database_url) as session:
            rows = reports.newest_service_successes(session)
            for namespace, service, stamp, stored, started, finished in rows:
                labels = [namespace, service]
                last_time.add_metric(labels, parse_timestamp(stamp).timestamp())
                size.add_metric(labels, float(stored or 0))
                if started is not None and finished is not None:
                    duration.add_metric(labels, _span(started, finished))
            for namespace, service, count in reports.failed_artifacts(session):
                failures.add_metric([namespace, service], float(count))
        yield from (last_time, duration, size, failures)

    def _sizes(self, fleet: Fleet) -> Iterator[Metric]:
        source = GaugeMetricFamily(
            "backfleet_service_last_success_source_size_bytes",
            "Source bytes (what the dump gave) of the service in its newest successful backup",
            labels=["namespace", "service"],
        )
        anomaly = GaugeMetricFamily(
            "backfleet_backup_size_anomaly",
            "1 if the service's newest successful backup had a size anomaly, else 0",
            labels=["namespace", "service"],
        )
        with session_scope(fleet.settings.database_url) as session:
            for namespace, service, bytes_, text in reports.newest_service_anomalies(session):
                source.add_metric([namespace, service], float(bytes_))
                anomaly.add_metric([namespace, service], 0.0 if text is None else 1.0)
        yield from (source, anomaly)

    def _storage(self, fleet: Fleet) -> Iterator[Metric]:
        stored = GaugeMetricFamily(
            "backfleet_stored_bytes",
            "Bytes in the store per namespace, service, storage class (tier) and kind, from "
            'the catalog: kind "backup", successful backups\' artifacts and their manifests '
            '(service "manifest.json"); kind "wal", the WAL a pitr service streams',
            labels=["namespace", "service", "tier", "kind"],
        )
        cost = GaugeMetricFamily(
            "backfleet_storage_monthly_cost",
            "Estimated cost of a month of the namespace's stored bytes in each tier, at the "
            "tier's STORAGE_PRICES price per GiB-month (only tiers with a price)",
            labels=["namespace", "tier"],
        )
        budget = GaugeMetricFamily(
            "backfleet_storage_budget_bytes",
            "The stored bytes the namespace may reach before storage.over_budget "
            "(its storage_budget, else STORAGE_BUDGET_BYTES; absent: no budget)",
            labels=["namespace"],
        )
        for item in storage_report(fleet):
            for service in item.services:
                labels = [item.namespace, service.service, service.tier, service.kind]
                stored.add_metric(labels, float(service.size))
            for tier in item.tiers:
                if tier.monthly_cost is not None:
                    cost.add_metric([item.namespace, tier.tier], tier.monthly_cost)
            if item.budget is not None:
                budget.add_metric([item.namespace], float(item.budget))
        yield from (stored, cost, budget)

    def _verifications(self, fleet: Fleet) -> Iterator[Metric]:
        last_time = GaugeMetricFamily(
            "backfleet_verification_last_timestamp_seconds",
            "When the namespace's newest verification ran",
            labels=["namespace", "kind"],
        )
        last_ok = GaugeMetricFamily(
            "backfleet_verification_last_success",
            "1 if the namespace's newest verification passed, 0 if it failed",
            labels=["namespace", "kind"],
        )
        results = CounterMetricFamily(
            "backfleet_verifications",
            "Verifications recorded in the catalog, by result",
            labels=["namespace", "kind", "result"],
        )
        with session_scope(fleet.settings.database_url) as session:
            newest: dict[tuple[str, str], Verification] = {}
            for row in reports.verifications_in_order(session):
                newest[(row.namespace, row.kind)] = row  # the last one wins
            for namespace, kind, status, count in reports.verification_counts(session):
                results.add_metric([namespace, kind, status.lower()], float(count))
        for (namespace, kind), row in sorted(newest.items()):
            last_time.add_metric([namespace, kind], row.checked_at.timestamp())
            last_ok.add_metric([namespace, kind], 1.0 if row.status == SUCCESS else 0.0)
        yield from (last_time, last_ok, results)

    def _health(self, fleet: Fleet) -> Iterator[Metric]:
        stale = GaugeMetricFamily(
            "backfleet_backup_stale",
            "1 if the latest successful backup holding the service is older than its max_age "
            "(or there is none past its first scheduled run's grace); a namespace "
            '(service="") is stale when any of its services is',
            labels=["namespace", "service"],
        )
        age = GaugeMetricFamily(
            "backfleet_backup_age_seconds",
            "Age of the latest successful backup (absent: none yet)",
            labels=["namespace", "service"],
        )
        max_age = GaugeMetricFamily(
            "backfleet_backup_max_age_seconds",
            "Each service's max_age, the RPO it is judged by; without labels, BACKUP_MAX_AGE",
            labels=["namespace", "service"],
        )
        # The unlabelled series is the fleet-wide default, as before per-service policies.
        max_age.add_sample(max_age.name, {}, float(fleet.settings.max_age_seconds))
        for item in freshness(fleet):
            labels = [item.namespace, item.service or ""]
            stale.add_metric(labels, 1.0 if item.stale else 0.0)
            if item.age is not None:
                age.add_metric(labels, item.age)
            if item.max_age is not None:
                max_age.add_metric(labels, float(item.max_age))
        alerts = GaugeMetricFamily(
            "backfleet_alerts_open", "Open alert conditions", labels=["event"]
        )
        with session_scope(fleet.settings.database_url) as session:
            for event, count in reports.open_alerts_by_event(session):
                alerts.add_metric([event], float(count))
        yield from (stale, age, max_age, alerts)

    def _audit_backlog(self, fleet: Fleet) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "backfleet_audit_backlog_events",
            "User events recorded but not yet confirmed shipped to the store",
            labels=["namespace"],
        )
        elsewhere = GaugeMetricFamily(
            "backfleet_audit_unplaced_events",
            "User events of namespaces this fleet does not configure: kept, not shipped",
        )
        unplaced = 0
        with session_scope(fleet.settings.database_url) as session:
            for namespace, count in unshipped_by_namespace(session).items():
                if namespace in fleet.config.namespaces:  # a label only for a configured name
                    backlog.add_metric([namespace], float(count))
                else:
                    unplaced += count
        elsewhere.add_metric([], float(unplaced))
        yield from (backlog, elsewhere)

    def _queues(self, fleet: Fleet) -> Iterator[Metric]:
        up = GaugeMetricFamily("backfleet_broker_up", "1 if the broker answered this scrape")
        depth = GaugeMetricFamily(
            "backfleet_queue_depth", "Messages waiting in each queue", labels=["queue"]
        )
        depths = self.depths(fleet.settings.broker_url)
        up.add_metric([], 0.0 if depths is None else 1.0)
        for queue, count in (depths or {}).items():
            depth.add_metric([queue], float(count))
        yield from (up, depth)


def _success_families(
    prefix: str,
    labels: list[str],
    *,
    time_help: str,
    duration_help: str,
    size_help: str,
    failures_help: str,
) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
    """The newest success's time, duration and size, and the failures, of a namespace or service."""
    return (
        GaugeMetricFamily(f"{prefix}_last_success_timestamp_seconds", time_help, labels=labels),
        GaugeMetricFamily(f"{prefix}_last_success_duration_seconds", duration_help, labels=labels),
        GaugeMetricFamily(f"{prefix}_last_success_size_bytes", size_help, labels=labels),
        CounterMetricFamily(f"{prefix}_failures", failures_help, labels=labels),
    )


def _span(started: datetime, finished: datetime) -> float:
    return max(0.0, (finished - started).total_seconds())
