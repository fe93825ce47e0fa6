"""Maintenance tasks (queue `maintenance`): tasks.retention.abort_stale_uploads, apply_retention."""

from typing import Any

from tasks.app import app
from workers.fleet import current_fleet
from workers.operations.retention import RetentionPlan, apply_secondary_retention
from workers.operations.retention import apply_retention as perform_retention
from workers.operations.sweep import abort_stale_uploads as sweep
from workers.queues import ABORT_STALE_UPLOADS, APPLY_RETENTION


@app.task(name=ABORT_STALE_UPLOADS)
def abort_stale_uploads() -> dict[str, Any]:
    result = sweep(current_fleet())
    return {"aborted": result.aborted, "kept": len(result.kept)}


@app.task(name=APPLY_RETENTION)
def apply_retention(namespace: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    # Never forced: a scheduled pass waits for each storage class's billed minimum.
    fleet = current_fleet()
    plans = perform_retention(fleet, namespace=namespace, dry_run=dry_run)
    second = apply_secondary_retention(fleet, namespace=namespace, dry_run=dry_run)
    return {
        "primary": {p.namespace: _summary(p) for p in plans},
        "secondary": {p.namespace: _summary(p) for p in second},
    }


def _summary(plan: RetentionPlan) -> dict[str, Any]:
    summary: dict[str, Any] = {"kept": len(plan.keep), "deleted": sorted(plan.delete)}
    if plan.skipped:
        summary["skipped"] = plan.skipped
    if plan.moves:
        summary["moved"] = {stamp: move.storage_class for stamp, move in plan.moves.items()}
    if plan.extensions:
        summary["locksExtended"] = sorted(plan.extensions)
    if plan.wal:  # WAL files of pitr services planned to go, and gone (0 in a dry run)
        summary["wal"] = [
            {"service": prune.service, "files": prune.files, "deleted": prune.deleted}
            for prune in plan.wal
        ]
    return summary
