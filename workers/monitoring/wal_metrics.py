"""The WAL streaming of `pitr` services as Prometheus gauges, per namespace and service
(monitoring/wal.py reads it from the catalog; /metrics asks at each scrape). Labels hold
names only: no URL, host or slot.

Every configured `pitr` service has `streaming` (0 until a streamer said something: never
streamed is not streaming), `gaps`, `window_closed` and the two thresholds the alert rules
compare with (WAL_RPO, WAL_SLOT_MAX_RETAINED), so no rule hard-codes a setting."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from workers.fleet import Fleet
from workers.monitoring.wal import wal_report

LABELS = ["namespace", "service"]


def wal_families(fleet: Fleet) -> Iterator[Metric]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"backfleet_wal_{name}", text, labels=LABELS)

    streaming = gauge(
        "streaming", "1 if a `backfleet wal` streams the service's WAL now (it said so lately)"
    )
    lag_bytes = gauge(
        "lag_bytes", "WAL the server had written and the store did not hold yet, at the last word"
    )
    lag_seconds = gauge(
        "lag_seconds",
        "Seconds since everything the server had written was last in the store (the RPO now)",
    )
    shipped_lsn = gauge(
        "last_shipped_lsn", "The end of the WAL shipped, as a byte position (an LSN as a number)"
    )
    shipped_at = gauge("last_shipped_timestamp_seconds", "When WAL was last shipped")
    retained = gauge(
        "slot_retained_bytes",
        "WAL the service's replication slot holds on the database server (its disk)",
    )
    gaps = gauge(
        "gaps", "Gaps recorded in the service's WAL (each closes the window until a backup)"
    )
    closed = gauge(
        "window_closed",
        "1 while the service's last gap is not followed by a successful backup: nothing after "
        "it is recoverable yet (wal.gap is open)",
    )
    rpo = gauge("rpo_seconds", "WAL_RPO: the lag past which wal.lag opens")
    max_retained = gauge(
        "slot_max_retained_bytes",
        "WAL_SLOT_MAX_RETAINED: the slot size past which wal.retained opens",
    )
    settings = fleet.settings
    for item in wal_report(fleet):
        labels = [item.namespace, item.service]
        streaming.add_metric(labels, 1.0 if item.streaming else 0.0)
        gaps.add_metric(labels, float(item.gaps))
        closed.add_metric(labels, 1.0 if item.window_closed else 0.0)
        rpo.add_metric(labels, float(settings.wal_rpo_seconds))
        max_retained.add_metric(labels, float(settings.wal_slot_max_retained))
        if item.lag_bytes is not None:
            lag_bytes.add_metric(labels, float(item.lag_bytes))
        if item.lag_seconds is not None:
            lag_seconds.add_metric(labels, item.lag_seconds)
        if item.shipped_lsn is not None:
            shipped_lsn.add_metric(labels, float(item.shipped_lsn))
        if item.shipped_at is not None:
            shipped_at.add_metric(labels, item.shipped_at.timestamp())
        if item.retained_bytes is not None:
            retained.add_metric(labels, float(item.retained_bytes))
    yield from (streaming, lag_bytes, lag_seconds, shipped_lsn, shipped_at, retained, gaps)
    yield from (closed, rpo, max_retained)
