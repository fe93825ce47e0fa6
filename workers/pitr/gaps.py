"""A gap: WAL of a `pitr` service that is not in the store and that the server may no longer
have. It is recorded (WalGap: what was shipped up to, where shipping resumed, why) and
alerted (`wal.gap`, open until a backup of the service succeeds after it); restores to a
moment cannot cross it, so the recoverable window restarts at the next base backup.

Detected when the slot is missing or invalidated (wal_status `lost`), when pg_receivewal
is told the WAL it asked for was removed, and when the catalog's segments have a hole no
recorded gap explains. A slot found missing counts as a gap even when the stream itself
went on: nothing held the WAL on the server meanwhile, so nothing vouches for it.
"""

import logging

from workers.catalog.db import session_scope
from workers.catalog.wal import holes, record_gap, wal_gaps
from workers.fleet import Fleet
from workers.monitoring.wal import open_gap_alert
from workers.pitr.lsn import format_lsn

log = logging.getLogger(__name__)


def report_gap(
    fleet: Fleet,
    *,
    namespace: str,
    service: str,
    system_identifier: str | None,
    start_lsn: int | None,
    end_lsn: int | None,
    reason: str,
) -> None:
    """Record the gap and open the service's wal.gap alert."""
    with session_scope(fleet.settings.database_url) as session:
        record_gap(
            session,
            namespace=namespace,
            service=service,
            system_identifier=system_identifier,
            start_lsn=start_lsn,
            end_lsn=end_lsn,
            reason=reason,
        )
    where = _span(start_lsn, end_lsn)
    log.error("WAL gap in service %s of namespace %s%s: %s", service, namespace, where, reason)
    text = (
        f"Backfleet: WAL of service {service} of namespace {namespace} has a gap{where}: "
        f"{reason}. Restores to a moment cannot cross it: the recoverable window starts "
        "again at the next base backup"
    )
    open_gap_alert(fleet, namespace, service, text)


def unexplained_holes(
    fleet: Fleet, *, namespace: str, service: str, system_identifier: str
) -> list[tuple[int, int]]:
    """Holes between the cluster's shipped segments that no recorded gap covers."""
    with session_scope(fleet.settings.database_url) as session:
        found = holes(
            session, namespace=namespace, service=service, system_identifier=system_identifier
        )
        known = [
            (gap.start_lsn, gap.end_lsn)
            for gap in wal_gaps(session, namespace=namespace, service=service)
            if gap.start_lsn is not None and gap.end_lsn is not None
        ]
    return [
        (start, end)
        for start, end in found
        if not any(low <= start and end <= high for low, high in known)
    ]


def _span(start: int | None, end: int | None) -> str:
    if start is None and end is None:
        return ""
    low = format_lsn(start) if start is not None else "?"
    high = format_lsn(end) if end is not None else "?"
    return f" (after {low})" if low == high else f" (from {low} to {high})"
