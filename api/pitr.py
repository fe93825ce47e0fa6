"""What `backup/latest` says of a namespace's `pitr` services: each one's recoverable window
(workers/pitr/window.py) and its streaming lag (the streamer's word, monitoring/wal.py)."""

from api.schemas import PitrWindowStatus
from workers.catalog.db import session_scope
from workers.fleet import Fleet
from workers.monitoring.wal import pitr_services, wal_report
from workers.pitr.window import load_window, promised_window
from workers.timestamps import format_moment


def pitr_windows(fleet: Fleet, namespace: str) -> list[PitrWindowStatus]:
    """One entry per `pitr` service of the namespace, by name; empty when it has none."""
    wanted = [(ns, name) for ns, name in pitr_services(fleet) if ns == namespace]
    if not wanted:
        return []
    lags = {item.service: item for item in wal_report(fleet, only=wanted)}
    specs = fleet.config.namespaces.get(namespace, {})
    answer = []
    with session_scope(fleet.settings.database_url) as session:
        for _, service in wanted:
            window = load_window(session, namespace=namespace, service=service)
            lag = lags.get(service)
            answer.append(
                PitrWindowStatus(
                    service=service,
                    earliest=format_moment(window.earliest) if window.earliest else None,
                    latest=format_moment(window.latest) if window.latest else None,
                    reason=window.reason,
                    pitr_window=promised_window(specs.get(service), fleet.settings),
                    streaming=bool(lag and lag.streaming),
                    lag_seconds=lag.lag_seconds if lag else None,
                    lag_bytes=lag.lag_bytes if lag else None,
                )
            )
    return answer
