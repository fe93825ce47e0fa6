"""The recoverable window of a `pitr` service: the moments a restore to a moment can reach.

    earliest = the consistent point (its `end_time`) of the oldest successful base backup
               from which the shipped WAL is continuous up to the newest shipped data
    latest   = the last moment all the WAL the server had written was shipped, in that run

Continuous means: the cluster's shipped segments (complete ones and partials, any
timeline) leave no hole from the base backup's consistent point (`end_lsn`) to the
newest shipped data, and no recorded gap (wal_gaps) lies after that base backup; a gap
cuts the window, which starts again at the first base backup that ended after it.

`latest` is what is provably covered: the streamer's `caught_up_at` (wal_streams: the
newest moment, sampled before asking the server for its flushed WAL position, whose
position the shipped end reaches: pitr/flushes.py), when its word is of the same run;
otherwise (no streamer said it caught up within this run) the moment the run's newest
file was shipped, which holds what pg_receivewal had received when it was read. Times
are the worker's clock (end_time, shipped_at) and the database server's (commit times):
keep both on NTP.

PITR_WINDOW (a service's `pitr_window`) is how far back the window is promised (WAL
retention keeps what it needs); this module only reports it beside the window.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workers.catalog import queries
from workers.catalog.db import Session
from workers.catalog.models import WAL_SEGMENT, WalGap, WalSegment, WalStream
from workers.catalog.wal import wal_files, wal_gaps
from workers.pitr.lsn import parse_lsn
from workers.services_config import ServiceSpec
from workers.settings import Settings
from workers.timestamps import format_moment


@dataclass(frozen=True)
class BaseBackup:
    """A successful base backup of the service, as its facts recorded it."""

    timestamp: str
    system_identifier: str
    start_lsn: int
    end_lsn: int  # its consistent point
    start_time: datetime
    end_time: datetime  # no earlier than the consistent point

    @classmethod
    def of(cls, timestamp: str, facts: Any) -> "BaseBackup | None":
        """None when the facts lack what a restore to a moment needs (an older artifact)."""
        try:
            return cls(
                timestamp=timestamp,
                system_identifier=str(facts["system_identifier"]),
                start_lsn=parse_lsn(str(facts["start_lsn"])),
                end_lsn=parse_lsn(str(facts["end_lsn"])),
                start_time=datetime.fromisoformat(str(facts["start_time"])),
                end_time=datetime.fromisoformat(str(facts["end_time"])),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class WalRef:
    """One shipped WAL file (a catalog row, read out of its session)."""

    segment: str  # 24 hex digits, or `00000002.history`
    kind: str
    timeline: int
    system_identifier: str
    start_lsn: int
    end_lsn: int
    partial: bool
    key: str
    size: int
    source_size: int
    sha256: str
    encryption: dict[str, Any] | None
    shipped_at: datetime

    @classmethod
    def of(cls, row: WalSegment) -> "WalRef":
        return cls(
            segment=row.segment,
            kind=row.kind,
            timeline=row.timeline,
            system_identifier=row.system_identifier,
            start_lsn=row.start_lsn,
            end_lsn=row.end_lsn,
            partial=row.partial,
            key=row.key,
            size=row.size,
            source_size=row.source_size,
            sha256=row.sha256,
            encryption=row.encryption,
            shipped_at=row.shipped_at,
        )


@dataclass(frozen=True)
class Window:
    """A service's recoverable window; `earliest`/`latest` None: no window (`reason` says
    why). `bases`: the base backups a restore to a moment may start from, oldest first."""

    namespace: str
    service: str
    earliest: datetime | None = None
    latest: datetime | None = None
    reason: str | None = None
    bases: tuple[BaseBackup, ...] = ()
    run: tuple[WalRef, ...] = ()  # the continuous run's segment files, in LSN order
    histories: tuple[WalRef, ...] = ()  # the cluster's timeline history files
    others: tuple[BaseBackup, ...] = field(default=(), repr=False)  # every base of the cluster

    def contains(self, moment: datetime) -> bool:
        return (
            self.earliest is not None
            and self.latest is not None
            and self.earliest <= moment <= self.latest
        )

    def describe(self) -> str:
        """`earliest 2026-03-02T10:00:00Z, latest 2026-03-02T14:31:59Z`, or why there is none."""
        if self.earliest is None or self.latest is None:
            return f"none ({self.reason or 'nothing shipped'})"
        return f"earliest {format_moment(self.earliest)}, latest {format_moment(self.latest)}"

    def base_for(self, moment: datetime) -> BaseBackup | None:
        """The newest base backup whose consistent point is at or before `moment`."""
        fitting = [base for base in self.bases if base.end_time <= moment]
        return fitting[-1] if fitting else None


def compute_window(
    *,
    namespace: str,
    service: str,
    bases: Iterable[BaseBackup],
    files: Sequence[WalRef],
    gaps: Sequence[WalGap],
    stream: WalStream | None,
) -> Window:
    """The window from the catalog's facts (pure: the unit tests feed it rows)."""
    empty = Window(namespace, service)
    segments = [ref for ref in files if ref.kind == WAL_SEGMENT]
    if not segments:
        return _none(empty, "no WAL shipped yet")
    cluster = _cluster(segments, stream)
    run = _last_run([ref for ref in segments if ref.system_identifier == cluster])
    low, high = run[0].start_lsn, max(ref.end_lsn for ref in run)
    cuts = [gap for gap in gaps if gap.system_identifier in (cluster, None)]
    own = [base for base in bases if base.system_identifier == cluster]
    seeds = tuple(base for base in own if low <= base.end_lsn <= high and _after_every(base, cuts))
    histories = tuple(
        ref for ref in files if ref.kind != WAL_SEGMENT and ref.system_identifier == cluster
    )
    latest = _latest(run, low, high, cluster, stream)
    found = Window(namespace, service, run=tuple(run), histories=histories, others=tuple(own))
    usable = tuple(base for base in seeds if base.end_time <= latest)
    if not usable:
        why = (
            "no successful base backup since the last WAL gap"
            if cuts and any(low <= base.end_lsn <= high for base in own)
            else "no successful base backup from which the shipped WAL is continuous"
        )
        return _none(found, why)
    return Window(
        namespace,
        service,
        earliest=usable[0].end_time,
        latest=latest,
        bases=usable,
        run=tuple(run),
        histories=histories,
        others=tuple(own),
    )


def _cluster(segments: list[WalRef], stream: WalStream | None) -> str:
    """The cluster streamed now (the streamer's word), else the one shipped last: LSNs of
    two clusters (a server re-initialised under the service) do not compare."""
    known = {ref.system_identifier for ref in segments}
    if stream is not None and stream.system_identifier in known:
        return str(stream.system_identifier)
    return max(segments, key=lambda ref: (ref.shipped_at, ref.end_lsn)).system_identifier


def _none(window: Window, reason: str) -> Window:
    return Window(
        window.namespace,
        window.service,
        reason=reason,
        run=window.run,
        histories=window.histories,
        others=window.others,
    )


def _last_run(segments: list[WalRef]) -> list[WalRef]:
    """The files of the stretch without a hole that holds the newest shipped data. A
    partial followed by its segment on a later timeline (a timeline switch) is no hole."""
    ordered = sorted(segments, key=lambda ref: (ref.start_lsn, ref.timeline, ref.segment))
    run: list[WalRef] = []
    covered: int | None = None
    for ref in ordered:
        if covered is not None and ref.start_lsn > covered:
            run, covered = [], None  # a hole: what came before cannot reach the newest data
        run.append(ref)
        covered = ref.end_lsn if covered is None else max(covered, ref.end_lsn)
    return run


def _after_every(base: BaseBackup, gaps: Sequence[WalGap]) -> bool:
    """The base backup ended after every gap was detected, and its consistent point lies past
    where each gap's WAL resumed (a gap detected while the base backup's tar was still
    being read may lie after its consistent point)."""
    for gap in gaps:
        if base.end_time <= gap.detected_at:
            return False
        where = gap.end_lsn if gap.end_lsn is not None else gap.start_lsn
        if where is not None and base.end_lsn < where:
            return False
    return True


def _latest(
    run: list[WalRef], low: int, high: int, cluster: str, stream: WalStream | None
) -> datetime:
    if (
        stream is not None
        and stream.system_identifier == cluster
        and stream.caught_up_at is not None
        and stream.shipped_lsn is not None
        and low <= stream.shipped_lsn <= high
    ):
        return stream.caught_up_at
    newest = max(run, key=lambda ref: (ref.end_lsn, ref.shipped_at))
    return newest.shipped_at


def load_window(session: Session, *, namespace: str, service: str) -> Window:
    """The service's window as the catalog says it now."""
    bases = [
        base
        for row in queries.base_backups(session, namespace=namespace, service=service)
        if (base := BaseBackup.of(row.timestamp, row.facts)) is not None
    ]
    files = [
        WalRef.of(row)
        for row in wal_files(session, namespace=namespace, service=service, kind=None)
    ]
    gaps = list(wal_gaps(session, namespace=namespace, service=service))
    stream = session.get(WalStream, (namespace, service))
    return compute_window(
        namespace=namespace, service=service, bases=bases, files=files, gaps=gaps, stream=stream
    )


def promised_window(spec: ServiceSpec | None, settings: Settings) -> str:
    """How far back the service is promised restorable: its `pitr_window`, else PITR_WINDOW."""
    return (spec.pitr_window if spec is not None else None) or settings.pitr_window
