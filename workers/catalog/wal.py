"""The shipped WAL of `pitr` services (WalSegment), its gaps (WalGap) and each streamer's
latest word (WalStream). Keyword-only like queries.py; callers own the session.

LSNs are plain integers here (workers/pitr/lsn.py spells them `16/B374D848`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from workers.catalog.models import (
    SUCCESS,
    WAL_SEGMENT,
    Artifact,
    Backup,
    WalGap,
    WalSegment,
    WalStream,
)
from workers.errors import ConflictError
from workers.timestamps import utcnow


class WalConflict(ConflictError):
    """The store already holds this WAL file name for another cluster (system identifier):
    a server re-initialised under the same service must not overwrite the old one's WAL."""


@dataclass(frozen=True)
class Recorded:
    """What recording a shipped file did: `kept` False when a complete segment's row stood
    (the partial just shipped is stray: delete its object); `replaced_key`: the object
    the row pointed at before, when it was another (the partial of a segment now complete)."""

    kept: bool
    replaced_key: str | None = None


_FIELDS = (
    "system_identifier",
    "kind",
    "start_lsn",
    "end_lsn",
    "partial",
    "key",
    "size",
    "source_size",
    "sha256",
    "encryption",
    "shipped_at",
    # A file shipped again is another object: its last check no longer says anything.
    "verified",
    "verified_at",
    "verify_error",
)


def record_wal_file(session: Session, *, row: WalSegment) -> Recorded:
    """Insert the row, or update the one of the same service, timeline and file name.

    A complete segment is never replaced by a partial of it (a restarted stream re-receives
    the segment it stood in). WalConflict if the name belongs to another cluster."""
    # The column defaults apply at insert only; an update copies these too.
    row.kind, row.partial = row.kind or WAL_SEGMENT, bool(row.partial)
    row.shipped_at = row.shipped_at or utcnow()
    existing = _same_file(session, row)
    if existing is None:
        try:
            with session.begin_nested():
                session.add(row)
            return Recorded(True)
        except SQLIntegrityError:  # another holder recorded it a moment ago
            existing = _same_file(session, row)
            if existing is None:
                raise
    if existing.system_identifier != row.system_identifier:
        raise WalConflict(
            f"WAL file {row.segment} of service {row.service} (namespace {row.namespace}) is "
            f"already stored for the cluster with system identifier "
            f"{existing.system_identifier}, not {row.system_identifier}: the server was "
            "re-initialised; move or delete the old WAL before streaming the new cluster"
        )
    if row.partial and not existing.partial:
        return Recorded(False)
    replaced = existing.key if existing.key != row.key else None
    for name in _FIELDS:
        setattr(existing, name, getattr(row, name))
    return Recorded(True, replaced)


def _same_file(session: Session, row: WalSegment) -> WalSegment | None:
    query = select(WalSegment).where(
        WalSegment.namespace == row.namespace,
        WalSegment.service == row.service,
        WalSegment.timeline == row.timeline,
        WalSegment.segment == row.segment,
    )
    return session.scalars(query).first()


def wal_files(
    session: Session, *, namespace: str, service: str, kind: str | None = WAL_SEGMENT
) -> Sequence[WalSegment]:
    """The service's shipped files in LSN order (then timeline); `kind` None: every kind."""
    query = select(WalSegment).where(
        WalSegment.namespace == namespace, WalSegment.service == service
    )
    if kind is not None:
        query = query.where(WalSegment.kind == kind)
    order = (WalSegment.start_lsn, WalSegment.timeline, WalSegment.segment)
    return session.scalars(query.order_by(*order)).all()


def wal_file(
    session: Session, *, namespace: str, service: str, timeline: int, segment: str
) -> WalSegment | None:
    """The row of one shipped file as it is now (a partial's row follows its newest object)."""
    query = select(WalSegment).where(
        WalSegment.namespace == namespace,
        WalSegment.service == service,
        WalSegment.timeline == timeline,
        WalSegment.segment == segment,
    )
    return session.scalars(query).first()


def newest_wal_file(session: Session, *, namespace: str, service: str) -> WalSegment | None:
    """The segment (complete or partial) whose shipped data ends last."""
    query = (
        select(WalSegment)
        .where(
            WalSegment.namespace == namespace,
            WalSegment.service == service,
            WalSegment.kind == WAL_SEGMENT,
        )
        .order_by(WalSegment.end_lsn.desc(), WalSegment.timeline.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def shipped_end(
    session: Session, *, namespace: str, service: str, system_identifier: str
) -> int | None:
    """The end of the newest complete segment shipped for this cluster (None: none)."""
    query = select(func.max(WalSegment.end_lsn)).where(
        WalSegment.namespace == namespace,
        WalSegment.service == service,
        WalSegment.system_identifier == system_identifier,
        WalSegment.kind == WAL_SEGMENT,
        WalSegment.partial.is_(False),
    )
    end: int | None = session.scalar(query)
    return end


def holes(
    session: Session, *, namespace: str, service: str, system_identifier: str
) -> list[tuple[int, int]]:
    """Stretches of WAL missing between the shipped segments of this cluster: (end of what
    comes before, start of what comes after). A partial followed by the same segment on a
    later timeline (a timeline switch) is no hole."""
    found: list[tuple[int, int]] = []
    covered: int | None = None
    for row in wal_files(session, namespace=namespace, service=service):
        if row.system_identifier != system_identifier:
            continue
        if covered is not None and row.start_lsn > covered:
            found.append((covered, row.start_lsn))
        covered = row.end_lsn if covered is None else max(covered, row.end_lsn)
    return found


def record_gap(
    session: Session,
    *,
    namespace: str,
    service: str,
    system_identifier: str | None,
    start_lsn: int | None,
    end_lsn: int | None,
    reason: str,
    detected_at: datetime | None = None,
) -> WalGap:
    gap = WalGap(
        namespace=namespace,
        service=service,
        system_identifier=system_identifier,
        start_lsn=start_lsn,
        end_lsn=end_lsn,
        reason=reason,
        detected_at=detected_at or utcnow(),
    )
    session.add(gap)
    session.flush()
    return gap


def wal_gaps(session: Session, *, namespace: str, service: str) -> Sequence[WalGap]:
    """The service's recorded gaps, oldest first."""
    query = (
        select(WalGap)
        .where(WalGap.namespace == namespace, WalGap.service == service)
        .order_by(WalGap.detected_at, WalGap.id)
    )
    return session.scalars(query).all()


def save_stream(session: Session, *, namespace: str, service: str, **values: Any) -> WalStream:
    """Set the streamer's row (made on first use) to `values`; updated_at is now."""
    row = session.get(WalStream, (namespace, service))
    if row is None:
        row = WalStream(namespace=namespace, service=service, slot=str(values.get("slot", "")))
        try:
            with session.begin_nested():
                session.add(row)
        except SQLIntegrityError:  # made by another holder meanwhile
            found = session.get(WalStream, (namespace, service))
            assert found is not None
            row = found
    for name, value in values.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    return row


def wal_streams(session: Session) -> Sequence[WalStream]:
    return session.scalars(select(WalStream).order_by(WalStream.namespace, WalStream.service)).all()


def backed_up_since(session: Session, *, namespace: str, service: str, moment: datetime) -> bool:
    """A successful backup holding the service's artifact finished after `moment` (a gap's
    window reopens with the next base backup)."""
    query = (
        select(Artifact.id)
        .join(Backup, Backup.id == Artifact.backup_id)
        .where(
            Backup.namespace == namespace,
            Backup.status == SUCCESS,
            Artifact.service == service,
            Artifact.status == SUCCESS,
            Backup.finished_at > moment,
        )
        .limit(1)
    )
    return session.scalars(query).first() is not None
