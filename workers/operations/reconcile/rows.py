"""The active rows the reconciler looks at, and what it says of each."""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from workers.catalog import queries
from workers.catalog.db import session_scope


@dataclass(frozen=True)
class Job:
    """One active row, as it was seen."""

    kind: Literal["backup", "restore"]
    row_id: int
    namespace: str  # the namespace whose lock the job holds (a restore's target)
    timestamp: str
    status: str
    attempts: int
    task_id: str | None
    created_at: datetime
    source_namespace: str | None = None  # a restore's


@dataclass(frozen=True)
class Outcome:
    kind: str
    namespace: str
    timestamp: str
    was: str
    status: str  # the settled status, or "left" when the row was left alone
    reason: str
    restore_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def active_jobs(url: str) -> list[Job]:
    with session_scope(url) as session:
        backups = queries.active_backups(session)
        jobs = [
            Job(
                "backup",
                b.id,
                b.namespace,
                b.timestamp,
                b.status,
                b.attempts or 0,
                b.task_id,
                b.created_at,
            )
            for b in backups
        ]
        restores = queries.active_restores(session)
        jobs += [
            Job(
                "restore",
                r.id,
                r.namespace,
                r.timestamp,
                r.status,
                r.attempts or 0,
                r.task_id,
                r.created_at,
                r.source_namespace,
            )
            for r in restores
        ]
    return jobs


def outcome_of(job: Job, status: str, reason: str) -> Outcome:
    return Outcome(
        kind=job.kind,
        namespace=job.namespace,
        timestamp=job.timestamp,
        was=job.status,
        status=status,
        reason=reason,
        restore_id=job.row_id if job.kind == "restore" else None,
    )
