"""`backfleet` commands that inspect and look after the fleet: list, verify, test-restore,
retention, reconcile, pin/unpin (`status` is status.py)."""

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from workers.cli.commands import _fail, main
from workers.cli.exits import FAILED
from workers.cli.output import to_json

if TYPE_CHECKING:
    from workers.operations.retention import RetentionPlan


@main.command("list")
@click.option("--namespace", default=None, help="Only this namespace.")
@click.option("--limit", default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_backups(namespace: str | None, limit: int, as_json: bool) -> None:
    """List backups from the catalog, newest first."""
    from workers.catalog import queries
    from workers.catalog.db import session_scope
    from workers.settings import get_settings

    with session_scope(get_settings().database_url) as session:
        rows: list[dict[str, Any]] = [
            {
                "namespace": b.namespace,
                "timestamp": b.timestamp,
                "status": b.status,
                "trigger": b.trigger,
                "onlyConfig": b.only_config,
                "services": b.services,
                "size": b.size,
                "error": b.error,
                "sizeAnomaly": b.size_anomaly,
                "warning": b.warning,
            }
            for b in queries.list_backups(session, namespace=namespace, limit=limit)
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAMESPACE':<16} {'TIMESTAMP':<20} {'STATUS':<8} {'SIZE':>12}  SERVICES")
    for row in rows:
        size = "" if row["size"] is None else str(row["size"])
        services = ",".join(row["services"])
        name, stamp, status = row["namespace"], row["timestamp"], row["status"]
        click.echo(f"{name:<16} {stamp:<20} {status:<8} {size:>12}  {services}")
        if row["sizeAnomaly"]:  # still a Success: said under its line, not in the status
            click.echo(f"{'':<16} size anomaly: {row['sizeAnomaly']}")


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--timestamp", default=None, help="Only this backup (needs --namespace).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(namespace: str | None, timestamp: str | None, as_json: bool) -> None:
    """Read backups back and check them against their manifests, and a sample of each
    `pitr` service's WAL against the catalog (WAL_VERIFY_SAMPLE); exit 1 on any failure."""
    from workers.cli.wal_upkeep import wal_verify_lines
    from workers.fleet import current_fleet
    from workers.operations.verify import verify_backups
    from workers.operations.wal_verify import verify_wal

    if timestamp and not namespace:
        _fail("--timestamp needs --namespace")
    fleet = current_fleet()
    results = verify_backups(fleet, namespace=namespace, timestamp=timestamp)
    # The WAL's sample too, unless one backup was asked for.
    wal = [] if timestamp else verify_wal(fleet, namespace=namespace)
    failed = sum(r.error is not None for r in results)
    if as_json:
        click.echo(to_json([*results, *wal]))  # a WAL entry has `service`, no `timestamp`
    else:
        for r in results:
            detail = f": {r.error}" if r.error else f" ({r.artifacts} artifacts, {r.bytes_read} B"
            if r.by_metadata and not r.error:  # archived: judged by the store's metadata, unread
                detail += f"; {r.by_metadata} archived, checked by metadata"
            detail += "" if r.error else ")"
            click.echo(f"{r.status:<8} {r.namespace}/{r.timestamp} [{r.store}]{detail}")
        for line in wal_verify_lines(wal):
            click.echo(line)
        click.echo(f"{len(results)} verified, {failed} failed")
    if failed or any(r.status != "Success" for r in wal):
        sys.exit(1)


@main.command("test-restore")
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option(
    "--timestamp", default=None, help="This backup, every service [the drills that are due]."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def test_restore_command(namespace: str | None, timestamp: str | None, as_json: bool) -> None:
    """Drill: restore backups into scratch targets, time them, compare with their manifests
    (each service on its test_restore cadence); exit 1 on failure."""
    from workers.fleet import current_fleet
    from workers.operations.restore_test import run_restore_tests

    if timestamp and not namespace:
        _fail("--timestamp needs --namespace")
    from workers.monitoring.drill_alerts import seconds_text
    from workers.monitoring.health import span

    results = run_restore_tests(current_fleet(), namespace=namespace, timestamp=timestamp)
    if as_json:
        click.echo(to_json(results))
        sys.exit(1 if any(r.error for r in results) else 0)
    for r in results:
        detail = f": {r.error}" if r.error else f" (tested: {', '.join(r.tested) or 'none'})"
        skipped = f"; not tested: {', '.join(r.skipped)}" if r.skipped else ""
        click.echo(f"{r.status:<8} {r.namespace}/{r.timestamp}{detail}{skipped}")
        for d in r.drills:  # each service's drill: how long, against its RTO
            met = "met" if d.met_rto else "MISSED"
            verdict = "FAILED" if d.error else f"RTO {span(d.rto_seconds)} {met}"
            counts = "" if d.counts_found is None else f", counts {d.counts_found}"
            click.echo(f"{'':<8}   {d.service}: {seconds_text(d.seconds)} ({verdict}){counts}")
    if not results:
        click.echo("no drill was due (`backfleet report` shows when each is)")
    if any(r.error for r in results):
        sys.exit(1)


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only print what would be deleted, moved colder and have its lock extended, and why.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Also print each service's policy and each kept backup with what keeps it.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also delete backups whose storage class's billed minimum duration has not passed.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every plan).")
def retention(
    namespace: str | None, dry_run: bool, explain: bool, force: bool, as_json: bool
) -> None:
    """Delete the backups no service's GFS retention keeps (pins and locks are never deleted),
    then the WAL older than every base backup kept; move the kept ones to their
    STORAGE_CLASSES class and extend their Object Lock."""
    from workers.cli.wal_upkeep import wal_retention_errors, wal_retention_lines
    from workers.fleet import current_fleet
    from workers.operations.retention import apply_retention, apply_secondary_retention

    verb = "would delete" if dry_run else "deleted"
    fleet = current_fleet()
    primary = apply_retention(fleet, namespace=namespace, dry_run=dry_run, force=force)
    secondary = apply_secondary_retention(fleet, namespace=namespace, dry_run=dry_run)
    troubled = any(
        plan.failed or plan.upkeep_failed or any(prune.error for prune in plan.wal)
        for plan in (*primary, *secondary)
    )
    if as_json:
        click.echo(to_json({"primary": primary, "secondary": secondary}))
        sys.exit(1 if troubled else 0)
    for where, plans in (("", primary), ("secondary store: ", secondary)):
        for plan in plans:
            if plan.skipped:
                click.echo(f"{where}{plan.namespace}: skipped this pass: {plan.skipped}")
                continue
            if explain:
                for series, policy in sorted(plan.policies.items()):
                    click.echo(f"{where}{plan.namespace} policy of {series}: {policy}")
                for stamp, reasons in sorted(plan.keep.items()):
                    click.echo(f"{where}keep {plan.namespace}/{stamp}: {'; '.join(reasons)}")
            for stamp, reason in sorted(plan.delete.items()):
                click.echo(f"{where}{verb} {plan.namespace}/{stamp}: {reason}")
            for stamp, error in sorted(plan.failed.items()):
                click.echo(f"{where}could not delete {plan.namespace}/{stamp}: {error}", err=True)
            for line in wal_retention_lines(plan, dry_run):
                click.echo(line)
            for line in wal_retention_errors(plan):
                click.echo(line, err=True)
            _print_upkeep(plan, dry_run)
            summary = f"{where}{plan.namespace}: {len(plan.keep)} kept, {len(plan.delete)} {verb}"
            if plan.moves:
                summary += f", {len(plan.moves)} {'to move' if dry_run else 'moved'} colder"
            if plan.extensions:
                summary += (
                    f", {len(plan.extensions)} locks {'to extend' if dry_run else 'extended'}"
                )
            click.echo(summary)
    if troubled:  # a deletion, a move or a lock extension that failed: say so to scripts too
        sys.exit(1)


def _print_upkeep(plan: "RetentionPlan", dry_run: bool) -> None:
    """The moves colder and lock extensions of the kept backups (workers/operations/upkeep.py)."""
    ns = plan.namespace
    for stamp, move in sorted(plan.moves.items()):
        verb = "would move" if dry_run else "moved"
        count = f"{len(move.keys)} object{'s' if len(move.keys) != 1 else ''}"
        click.echo(f"{verb} {ns}/{stamp} to {move.storage_class} ({count}): {move.reason}")
    for stamp, extension in sorted(plan.extensions.items()):
        verb = "would extend" if dry_run else "extended"
        until = extension.until.isoformat(timespec="seconds")
        click.echo(f"{verb} the Object Lock of {ns}/{stamp} to {until}")
    for stamp, error in sorted(plan.upkeep_failed.items()):
        click.echo(f"could not look after {ns}/{stamp}: {error}", err=True)


@main.command()
@click.option("--dry-run", is_flag=True, help="Only print what would be settled, and why.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def reconcile(dry_run: bool, as_json: bool) -> None:
    """Settle Pending/Running backups and restores whose task and lock are gone."""
    from workers.fleet import current_fleet
    from workers.operations.reconcile import reconcile as perform_reconcile

    outcomes = perform_reconcile(current_fleet(), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps([o.as_dict() for o in outcomes], indent=2))
        return
    verb = "would settle" if dry_run else "settled"
    for o in outcomes:
        what = f"{o.kind} {o.namespace}/{o.timestamp}" + (
            f" (restore {o.restore_id})" if o.restore_id is not None else ""
        )
        if o.status == "left":
            click.echo(f"left {what} {o.was}: {o.reason}")
        else:
            click.echo(f"{verb} {what} {o.was} -> {o.status}: {o.reason}")
    settled = sum(o.status != "left" for o in outcomes)
    click.echo(f"{settled} {verb}, {len(outcomes) - settled} left alone")


def _pin(timestamp: str, namespace: str | None, pinned: bool) -> None:
    from workers.fleet import current_fleet
    from workers.operations.retention import set_pinned

    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    if not set_pinned(fleet, namespace=namespace, timestamp=timestamp, pinned=pinned):
        _fail(f"no backup {timestamp} of namespace {namespace} in the catalog", FAILED)
    click.echo(f"backup {namespace}/{timestamp} {'pinned' if pinned else 'unpinned'}")


@main.command()
@click.argument("timestamp")
@click.option("--namespace", default=None, help="Namespace [the configured default].")
def pin(timestamp: str, namespace: str | None) -> None:
    """Keep the backup TIMESTAMP forever: retention never deletes a pinned backup."""
    _pin(timestamp, namespace, True)


@main.command()
@click.argument("timestamp")
@click.option("--namespace", default=None, help="Namespace [the configured default].")
def unpin(timestamp: str, namespace: str | None) -> None:
    """Let retention decide about the backup TIMESTAMP again."""
    _pin(timestamp, namespace, False)
