"""Recording a service's hook runs, and the warnings they leave on a backup."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from workers.catalog.models import FAILED, SUCCESS, Backup, HookRun


def record_hook_run(
    session: Session,
    *,
    backup_id: int,
    service: str,
    hook: str,
    program: str,
    ok: bool,
    detail: str,
    output: str,
    started_at: datetime,
    finished_at: datetime,
) -> HookRun:
    """One hook run of the backup's current attempt; `output` must be redacted already."""
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise LookupError(f"backup row {backup_id} is gone")
    run = HookRun(
        backup_id=backup_id,
        service=service,
        hook=hook,
        attempt=max(backup.attempts, 1),
        program=program,
        status=SUCCESS if ok else FAILED,
        detail=detail,
        output=output,
        started_at=started_at,
        finished_at=finished_at,
    )
    session.add(run)
    return run


def add_backup_warning(session: Session, *, backup_id: int, warning: str) -> None:
    """Append a line to the backup's warnings (it keeps its status)."""
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise LookupError(f"backup row {backup_id} is gone")
    backup.warning = f"{backup.warning}\n{warning}" if backup.warning else warning


def post_owed(session: Session, *, backup_id: int, service: str) -> bool:
    """Whether the service's `post` hook has not run in this backup since its latest `pre`
    (or has never run): its worker was lost before `post` ended, or while it ran."""
    hooks = session.scalars(
        select(HookRun.hook)
        .where(HookRun.backup_id == backup_id, HookRun.service == service)
        .order_by(HookRun.id)
    ).all()
    return "post" not in hooks or hooks[-1] == "pre"
