"""The recoverable window of each `pitr` service as Prometheus gauges (issue 21): its start
and end, and how far back it reaches against the promised `pitr_window`. Here, not in
workers/monitoring/: the window is workers/pitr/'s, which sits above monitoring."""

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.monitoring.wal import pitr_services
from workers.pitr.window import load_window, promised_window
from workers.timestamps import parse_duration

LABELS = ["namespace", "service"]


class WindowCollector(Collector):
    def __init__(self, fleet_provider: Callable[[], Fleet]) -> None:
        self.fleet_provider = fleet_provider

    def collect(self) -> Iterator[Metric]:
        fleet = self.fleet_provider()
        start = GaugeMetricFamily(
            "backfleet_wal_window_start_timestamp_seconds",
            "The earliest moment a `pitr` service can be restored to (absent: no window)",
            labels=LABELS,
        )
        end = GaugeMetricFamily(
            "backfleet_wal_window_end_timestamp_seconds",
            "The latest moment a `pitr` service can be restored to (absent: no window)",
            labels=LABELS,
        )
        promised = GaugeMetricFamily(
            "backfleet_wal_window_promised_seconds",
            "How far back the service is promised restorable (its pitr_window, else PITR_WINDOW)",
            labels=LABELS,
        )
        services = pitr_services(fleet)
        with session_scope(fleet.settings.database_url) as session:
            for namespace, service in services:
                labels = [namespace, service]
                spec = fleet.config.namespaces.get(namespace, {}).get(service)
                window_text = promised_window(spec, fleet.settings)
                promised.add_metric(labels, float(parse_duration(window_text)))
                window = load_window(session, namespace=namespace, service=service)
                if window.earliest is not None and window.latest is not None:
                    start.add_metric(labels, window.earliest.timestamp())
                    end.add_metric(labels, window.latest.timestamp())
        yield from (start, end, promised)
