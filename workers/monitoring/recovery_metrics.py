"""The recovery-time evidence as Prometheus gauges, per namespace and service
(monitoring/recovery.py computes it; /metrics reads it at each scrape)."""

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from workers.fleet import Fleet
from workers.monitoring.recovery import recovery_report

LABELS = ["namespace", "service"]


def recovery_families(fleet: Fleet) -> Iterator[Metric]:
    def gauge(name: str, text: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"backfleet_service_{name}", text, labels=LABELS)

    rto = gauge("rto_seconds", "The service's recovery-time objective (its `rto`, else BACKUP_RTO)")
    every = gauge(
        "test_restore_seconds",
        "How often the service is drilled (its `test_restore`, else TEST_RESTORE_EVERY)",
    )
    configured = gauge(
        "drill_configured",
        "1 if the service can be drilled; 0: not configured (a command service without "
        "test_restore_command; `backfleet report` says why)",
    )
    seconds = gauge(
        "last_drill_seconds", "How long the service's last drill took to restore (absent: never)"
    )
    when = gauge("last_drill_timestamp_seconds", "When the service's last drill finished")
    success = gauge("last_drill_success", "1 if the service's last drill passed, 0 if it failed")
    met = gauge(
        "drill_met_rto",
        "1 if the service's last drill passed within its RTO, 0 if it failed or took longer",
    )
    failing = gauge(
        "drill_failing", "1 if the latest drill of one of the service's retained backups failed"
    )
    overdue = gauge(
        "drill_overdue",
        "1 if the service has not been drilled within its test_restore cadence plus the grace",
    )
    restore = gauge(
        "last_restore_seconds", "How long the service's last restore run by a user took"
    )
    restore_met = gauge(
        "last_restore_met_rto", "1 if the service's last user restore succeeded within its RTO"
    )
    for item in recovery_report(fleet):
        labels = [item.namespace, item.service]
        rto.add_metric(labels, float(item.rto))
        every.add_metric(labels, float(item.every))
        configured.add_metric(labels, 1.0 if item.not_drilled is None else 0.0)
        if (last := item.last_restore) is not None:
            restore.add_metric(labels, last.seconds)
            restore_met.add_metric(labels, 1.0 if last.met_rto else 0.0)
        if item.not_drilled is not None:
            continue
        failing.add_metric(labels, 1.0 if item.failing else 0.0)
        overdue.add_metric(labels, 1.0 if item.overdue else 0.0)
        if (drill := item.last_drill) is not None:
            seconds.add_metric(labels, drill.seconds)
            when.add_metric(labels, drill.finished_at.timestamp())
            success.add_metric(labels, 1.0 if drill.status == "Success" else 0.0)
            met.add_metric(labels, 1.0 if drill.met_rto else 0.0)
    yield from (rto, every, configured, seconds, when, success, met, failing, overdue)
    yield from (restore, restore_met)
