"""After a successful backup: each service's sizes against its own history (monitoring/sizes.py).

An anomaly is recorded on the backup (`backups.size_anomaly`, every anomalous
service) and on the service's first artifact, and alerted as
`backup.size_anomaly`: one alert per service (condition
`backup.size_anomaly:<namespace>:<service>`), opened by its first anomalous backup
(later anomalous ones while it is open are marked, not alerted again) and closed
by that service's next backup that is not anomalous. The backup stays Success and
counts as any other (retention, freshness); nothing is deleted. The check is
one query, and it never raises: a failure is logged and the backup stands.
"""

import logging
from collections.abc import Sequence
from functools import partial

from workers.catalog import queries, reports
from workers.catalog.db import session_scope
from workers.errors import reason_of
from workers.fleet import Fleet
from workers.monitoring.alerts import AlertEvent, alerter_for, safely
from workers.monitoring.sizes import ServiceSizes, SizePolicy, judge
from workers.redact import redact
from workers.services_config import ServiceSpec
from workers.settings import Settings

log = logging.getLogger(__name__)

EVENT = "backup.size_anomaly"


def condition_of(namespace: str, service: str) -> str:
    """The service's one size-anomaly condition, whichever backup opened it."""
    return f"{EVENT}:{namespace}:{service}"


def _is_of(condition: str, namespace: str, service: str) -> bool:
    """The service's condition, or one of an earlier version (which added the backup's
    timestamp: one alert per service and backup)."""
    own = condition_of(namespace, service)
    return condition == own or condition.startswith(own + ":")


def policy_for(settings: Settings, spec: ServiceSpec | None) -> SizePolicy:
    """SIZE_ANOMALY_*, with the service's own `size_drop` and `size_growth` when it sets them
    (SIZE_ANOMALY_MIN_BYTES for every service)."""
    drop = spec.size_drop if spec is not None and spec.size_drop is not None else None
    growth = spec.size_growth if spec is not None and spec.size_growth is not None else None
    return SizePolicy(
        history=settings.size_anomaly_history,
        drop=settings.size_anomaly_drop if drop is None else drop,
        growth=settings.size_anomaly_growth if growth is None else growth,
        min_bytes=settings.size_anomaly_min_bytes,
    )


def check_backup_sizes(
    fleet: Fleet, *, backup_id: int, namespace: str, timestamp: str, services: Sequence[str]
) -> dict[str, str]:
    """Judge, mark and alert the backup's services; returns the anomalies found by service."""
    try:
        anomalies = _judge_backup(fleet, backup_id, namespace, timestamp, services)
        if anomalies:
            with session_scope(fleet.settings.database_url) as session:
                queries.mark_size_anomalies(session, backup_id=backup_id, anomalies=anomalies)
        _alert(fleet, namespace, timestamp, services, anomalies)
    except Exception as exc:
        reason = redact(reason_of(exc), fleet.secrets())
        log.error(
            "backup %s/%s: size check failed (the backup stands): %s", namespace, timestamp, reason
        )
        return {}
    return anomalies


def _judge_backup(
    fleet: Fleet, backup_id: int, namespace: str, timestamp: str, services: Sequence[str]
) -> dict[str, str]:
    specs = fleet.config.namespaces.get(namespace, {})
    policies = {service: policy_for(fleet.settings, specs.get(service)) for service in services}
    if not policies:
        return {}
    depth = 1 + max(policy.history for policy in policies.values())  # this backup, and N more
    with session_scope(fleet.settings.database_url) as session:
        rows = reports.service_size_history(
            session, namespace=namespace, services=services, through=timestamp, backups=depth
        )
    histories = _histories(rows)
    anomalies: dict[str, str] = {}
    for service, policy in policies.items():
        history = histories.get(service, [])
        if not history or history[0][0] != backup_id:
            continue  # this backup did not store the service: nothing to judge
        earlier = [sizes for _, sizes in history[1:]]
        if (text := judge(service, history[0][1], earlier, policy)) is not None:
            anomalies[service] = text
            log.warning("backup %s/%s: size anomaly: %s", namespace, timestamp, text)
    return anomalies


def _histories(rows: Sequence[reports.ArtifactSizes]) -> dict[str, list[tuple[int, ServiceSizes]]]:
    """Per service, (backup id, its sizes with every volume summed), newest backup first."""
    summed: dict[tuple[str, int], tuple[str, ServiceSizes]] = {}
    for row in rows:
        key = (row.service, row.backup_id)
        stamp, sizes = summed.get(key, (row.timestamp, ServiceSizes(0, 0, encrypted=False)))
        summed[key] = (
            stamp,
            ServiceSizes(
                sizes.source + row.source_size,
                sizes.stored + row.size,
                encrypted=sizes.encrypted or row.encrypted,
            ),
        )
    histories: dict[str, list[tuple[int, ServiceSizes]]] = {}
    for (service, backup_id), (_, sizes) in sorted(
        summed.items(), key=lambda item: item[1][0], reverse=True
    ):
        histories.setdefault(service, []).append((backup_id, sizes))
    return histories


def _alert(
    fleet: Fleet,
    namespace: str,
    timestamp: str,
    services: Sequence[str],
    anomalies: dict[str, str],
) -> None:
    alerter = alerter_for(fleet)
    for service, text in sorted(anomalies.items()):
        alert = AlertEvent(
            event=EVENT,
            text=(
                f"Backfleet: backup {namespace}/{timestamp} has an unusual size: {text}. "
                "It is kept and counts as a successful backup: check that the service "
                "holds what it should"
            ),
            namespace=namespace,
            service=service,
            timestamp=timestamp,
        )
        condition = condition_of(namespace, service)
        safely(partial(alerter.open, condition, alert), condition)
    normal = [service for service in services if service not in anomalies]
    if not normal:
        return
    # A normal backup of a service closes its size alert (one query finds them).
    for condition in alerter.open_conditions(f"{EVENT}:{namespace}:"):
        if any(_is_of(condition, namespace, s) for s in normal):
            safely(partial(alerter.resolve, condition), condition)
