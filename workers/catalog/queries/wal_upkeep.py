"""What retention and verification read and write of the WAL of `pitr` services
(workers/operations/retention/wal_plan.py, workers/operations/wal_verify.py): the base
backups a service's WAL serves, its WAL files, deleting them, sampling and recording their
read-backs. Keyword-only like the other queries; callers own the session.
"""

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from workers.catalog.models import FAILED, SUCCESS, WalSegment


def wal_services(session: Session, *, namespace: str) -> list[str]:
    """The services the namespace has WAL files of, in name order."""
    query = select(WalSegment.service).where(WalSegment.namespace == namespace).distinct()
    return sorted(session.scalars(query))


def delete_wal_rows(session: Session, *, ids: Collection[int]) -> int:
    """Delete these WAL rows; how many went."""
    if not ids:
        return 0
    result = session.execute(delete(WalSegment).where(WalSegment.id.in_(list(ids))))
    return int(getattr(result, "rowcount", 0) or 0)


def wal_to_check(
    session: Session, *, namespace: str, service: str, sample: int, skip_ids: Collection[int] = ()
) -> list[WalSegment]:
    """A verification pass's WAL files of a service: every one whose last check failed,
    then `sample` more: up to half of them the newest not checked since they were shipped
    (newest first), the rest others at random; never those of `skip_ids` (the growing
    partial)."""
    base = select(WalSegment).where(
        WalSegment.namespace == namespace,
        WalSegment.service == service,
        WalSegment.id.not_in(list(skip_ids)),
    )
    chosen = list(session.scalars(base.where(WalSegment.verified == FAILED)))
    taken = [row.id for row in chosen]
    fresh = list(
        session.scalars(
            base.where(WalSegment.verified.is_(None), WalSegment.id.not_in(taken))
            .order_by(WalSegment.end_lsn.desc(), WalSegment.timeline.desc())
            .limit((sample + 1) // 2)
        )
    )
    taken += [row.id for row in fresh]
    others = sample - len(fresh)
    rest = base.where(WalSegment.id.not_in(taken)).order_by(func.random()).limit(others)
    return chosen + fresh + list(session.scalars(rest))


def record_wal_check(
    session: Session, *, id: int, sha256: str, ok: bool, error: str | None, at: datetime
) -> bool:
    """The verdict of one read-back, on the row it read (the same object: `sha256`); False
    when the row is gone or names another object now (nothing recorded)."""
    row = session.get(WalSegment, id)
    if row is None or row.sha256 != sha256:
        return False
    row.verified, row.verified_at = (SUCCESS if ok else FAILED), at
    row.verify_error = None if ok else error
    return True


def failed_wal(session: Session, *, namespace: str, service: str) -> Sequence[WalSegment]:
    """The service's WAL files whose last check failed."""
    query = select(WalSegment).where(
        WalSegment.namespace == namespace,
        WalSegment.service == service,
        WalSegment.verified == FAILED,
    )
    return session.scalars(query.order_by(WalSegment.start_lsn)).all()
