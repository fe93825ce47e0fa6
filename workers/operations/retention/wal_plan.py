"""Retention of the WAL of `pitr` services: the base backups their window needs, and
which WAL files go.

The window: a `pitr` service is restorable to any moment of its last `pitr_window` (else
PITR_WINDOW) only if a base backup consistent at or before the window's start is still
there. So, beside what its GFS policy keeps, retention keeps the service's newest
successful base backup whose consistent point (its `end_time` fact, else when its backup
finished) is at or before now - window (`pitr window` in the plan's reasons; it stays in
its storage class: a restore to a moment starts from it).

The WAL: WAL is kept back to the oldest base backup still kept. Per service and cluster
(system identifier), a segment goes when its end is at or before the `start_lsn` of the
oldest base backup of that cluster that is still kept (anything a pass keeps counts:
pinned, read by a restore, locked): that backup's own tar holds the WAL from its
start, and replay goes on from there. Never deleted:
- timeline history files (tiny, and a restore across a promotion reads them);
- WAL of the cluster being streamed when no base backup of it is kept yet (the first
  one may be running: its start is in that WAL);
- the cluster's newest complete segment and what follows it (a restarted streamer may
  receive and ship it again), and the growing `.partial`.
WAL of a cluster no kept base backup belongs to, and that is not streamed (the server
was re-initialised, or the service left PITR), restores nothing: it goes.
"""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from workers.catalog import queries
from workers.catalog.db import Session, session_scope
from workers.catalog.models import WAL_SEGMENT, WalSegment, WalStream
from workers.catalog.queries import BaseBackupRow
from workers.catalog.wal import newest_wal_file, wal_files
from workers.fleet import Fleet
from workers.pitr.lsn import format_lsn, parse_lsn
from workers.timestamps import parse_duration

log = logging.getLogger(__name__)

# What `RetentionPlan.keeping` says of a base backup kept for a service's window
# (tiers.HOT_REASONS: it stays in its class).
PITR_WINDOW = "pitr window"


@dataclass
class WalPrune:
    """The WAL files of one service and cluster that go (or would go): how many, how many
    stored bytes, the first and last file names, the LSN range, and why."""

    service: str
    system_identifier: str
    files: int
    size: int  # stored bytes
    first: str
    last: str
    start_lsn: str  # as PostgreSQL writes it
    end_lsn: str
    reason: str
    deleted: int = 0  # files deleted by this pass (0 in a dry run)
    held: str | None = None  # why the deletion stopped early without failing (Object Lock)
    error: str | None = None  # why it failed part-way (the rest goes next pass)


@dataclass(frozen=True)
class WalFile:
    """A WAL file to delete, detached from the session."""

    id: int
    key: str
    segment: str
    start_lsn: int
    end_lsn: int


def base_backups(session: Session, namespace: str) -> list[BaseBackupRow]:
    return queries.base_backups(session, namespace=namespace)


def consistent_at(base: BaseBackupRow) -> datetime | None:
    """When the base backup's consistent point was reached, at the latest."""
    text = base.facts.get("end_time")
    if isinstance(text, str):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return base.finished_at


def window_seconds(fleet: Fleet, namespace: str, service: str) -> int | None:
    """The service's `pitr_window` (else PITR_WINDOW) in seconds; None: not a pitr service."""
    spec = fleet.config.namespaces.get(namespace, {}).get(service)
    if spec is None or not spec.pitr:
        return None
    return parse_duration(spec.pitr_window or fleet.settings.pitr_window)


def keep_windows(
    fleet: Fleet,
    *,
    namespace: str,
    bases: Iterable[BaseBackupRow],
    keep: dict[str, list[str]],
    keeping: dict[str, set[str]],
    now: datetime,
) -> None:
    """Keep each `pitr` service's newest base backup consistent at or before its window's
    start (added to `keep` with the reason, and to `keeping`)."""
    found = list(bases)
    for service in sorted({base.service for base in found}):
        seconds = window_seconds(fleet, namespace, service)
        if seconds is None:
            continue
        start = now - timedelta(seconds=seconds)
        before = [
            (moment, base.timestamp)
            for base in found
            if base.service == service
            and (moment := consistent_at(base)) is not None
            and moment <= start
        ]
        if not before:
            continue  # every base backup is inside the window: the oldest kept is its start
        moment, stamp = max(before)
        keep.setdefault(stamp, []).append(
            f"pitr window of {service} ({_span(seconds)}): its newest base backup consistent "
            f"at or before {start.isoformat(timespec='seconds')} ({moment.isoformat()})"
        )
        keeping.setdefault(stamp, set()).add(PITR_WINDOW)


def plan_wal(
    fleet: Fleet, *, namespace: str, gone: Iterable[str] = ()
) -> list[tuple[WalPrune, list[WalFile]]]:
    """What WAL of the namespace goes once the backups `gone` are deleted (every other
    successful backup in the catalog is kept), per service and cluster, oldest first."""
    gone = set(gone)
    work: list[tuple[WalPrune, list[WalFile]]] = []
    with session_scope(fleet.settings.database_url) as session:
        bases = [base for base in base_backups(session, namespace) if base.timestamp not in gone]
        for service in queries.wal_services(session, namespace=namespace):
            rows = wal_files(session, namespace=namespace, service=service, kind=None)
            newest = newest_wal_file(session, namespace=namespace, service=service)
            stream = session.get(WalStream, (namespace, service))
            streamed = {newest.system_identifier} if newest is not None else set()
            if stream is not None and stream.system_identifier:
                streamed.add(stream.system_identifier)
            work += _plan_service(
                fleet,
                namespace=namespace,
                service=service,
                rows=rows,
                bases=[base for base in bases if base.service == service],
                streamed=streamed,
                growing=newest.id if newest is not None and newest.partial else None,
            )
    return work


def _plan_service(
    fleet: Fleet,
    *,
    namespace: str,
    service: str,
    rows: Iterable[WalSegment],
    bases: list[BaseBackupRow],
    streamed: set[str],
    growing: int | None,
) -> list[tuple[WalPrune, list[WalFile]]]:
    starts = _starts(bases)
    if starts is None:
        log.warning(
            "retention of %s: a base backup of %s has no system identifier or start LSN: its "
            "WAL is left alone",
            namespace,
            service,
        )
        return []
    pitr = window_seconds(fleet, namespace, service) is not None
    by_cluster: dict[str, list[WalSegment]] = {}
    for row in rows:
        if row.kind == WAL_SEGMENT and row.id != growing:
            by_cluster.setdefault(row.system_identifier, []).append(row)
    work = []
    for cluster, segments in sorted(by_cluster.items()):
        if cluster in starts:
            cutoff, stamp = starts[cluster]
            reason = (
                f"before the oldest base backup of {service} still kept ({stamp}, which "
                f"starts at {format_lsn(cutoff)})"
            )
        elif cluster in streamed and pitr:
            continue  # no base backup of the streamed cluster yet: its first may be running
        else:
            cutoff = 1 << 64
            reason = (
                f"no base backup of {service}'s cluster {cluster} is kept: its WAL restores nothing"
            )
        if cluster in streamed:  # a restarted streamer may ship its newest segment again
            complete = [row.start_lsn for row in segments if not row.partial]
            if complete:
                cutoff = min(cutoff, max(complete))
        doomed = sorted(
            (row for row in segments if row.end_lsn <= cutoff),
            key=lambda row: (row.start_lsn, row.timeline, row.segment),
        )
        if doomed:
            work.append((_prune(service, cluster, doomed, reason), [_file(r) for r in doomed]))
    return work


def _starts(bases: Iterable[BaseBackupRow]) -> dict[str, tuple[int, str]] | None:
    """Per cluster, the lowest start LSN of its base backups and that backup's timestamp;
    None if a base backup lacks the facts (its WAL cannot be told apart)."""
    starts: dict[str, tuple[int, str]] = {}
    for base in bases:
        cluster, start = base.facts.get("system_identifier"), _lsn(base.facts.get("start_lsn"))
        if not cluster or start is None:
            return None
        if str(cluster) not in starts or start < starts[str(cluster)][0]:
            starts[str(cluster)] = (start, base.timestamp)
    return starts


def _lsn(value: Any) -> int | None:
    try:
        return parse_lsn(str(value)) if value else None
    except ValueError:
        return None


def _prune(service: str, cluster: str, doomed: list[WalSegment], reason: str) -> WalPrune:
    return WalPrune(
        service=service,
        system_identifier=cluster,
        files=len(doomed),
        size=sum(row.size for row in doomed),
        first=doomed[0].segment + (".partial" if doomed[0].partial else ""),
        last=doomed[-1].segment + (".partial" if doomed[-1].partial else ""),
        start_lsn=format_lsn(min(row.start_lsn for row in doomed)),
        end_lsn=format_lsn(max(row.end_lsn for row in doomed)),
        reason=reason,
    )


def _file(row: WalSegment) -> WalFile:
    return WalFile(row.id, row.key, row.segment, row.start_lsn, row.end_lsn)


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def failures_of(plan: "HasWal") -> Mapping[str, str]:
    """`wal/<service>` -> why its WAL could not all go (for the retention.failed alert)."""
    return {f"wal/{prune.service}": prune.error for prune in plan.wal if prune.error}


class HasWal(Protocol):
    wal: list[WalPrune]
