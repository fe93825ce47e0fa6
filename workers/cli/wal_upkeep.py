"""What `backfleet retention` and `backfleet verify` print of the WAL of `pitr` services
(one line per service and cluster, never one per file)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.operations.retention import RetentionPlan
    from workers.operations.wal_verify import WalVerifyResult


def wal_retention_lines(plan: "RetentionPlan", dry_run: bool) -> list[str]:
    """What WAL goes (or would go): how many files, their bytes, names and LSN range, why."""
    from workers.monitoring.sizes import format_bytes

    lines = []
    for prune in plan.wal:
        count = prune.files if dry_run else prune.deleted
        verb = "would delete" if dry_run else "deleted"
        of = "" if dry_run or prune.deleted == prune.files else f" of {prune.files}"
        files = "file" if (prune.files if of else count) == 1 else "files"
        lines.append(
            f"{verb} {count}{of} WAL {files} of {plan.namespace}/{prune.service} "
            f"({format_bytes(prune.size)}, {prune.first} … {prune.last}, LSN {prune.start_lsn} "
            f"to {prune.end_lsn}): {prune.reason}"
        )
        if prune.held:
            lines.append(f"  the rest waits: {prune.held}")
    return lines


def wal_retention_errors(plan: "RetentionPlan") -> list[str]:
    return [
        f"could not delete all the WAL of {plan.namespace}/{prune.service}: {prune.error}"
        for prune in plan.wal
        if prune.error
    ]


def wal_verify_lines(results: "list[WalVerifyResult]") -> list[str]:
    lines = []
    for r in results:
        where = f"{r.namespace}/{r.service} WAL"
        if r.status == "Success":
            lines.append(f"{r.status:<8} {where} ({r.files} files, {r.bytes_read} B)")
            continue
        why = "; ".join(r.failed) or r.error or ""
        lines.append(f"{r.status:<8} {where} ({r.files} files checked): {why}")
    return lines
