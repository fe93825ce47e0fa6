"""`backfleet`: run the fleet's processes and ask it for backups, restores and lists."""

import json
import os
import sys
from typing import Any, NoReturn

import click

from workers.errors import BackfleetError
from workers.queues import ALL_QUEUES


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _exec_celery(*args: str) -> NoReturn:
    """Become the Celery process (so signals reach it directly)."""
    from workers.settings import get_settings

    try:
        get_settings()  # refuse to start on invalid settings, with a clear message
    except BackfleetError as exc:
        _fail(str(exc))
    argv = [sys.executable, "-m", "celery", "-A", "tasks.app", *args]
    os.execv(sys.executable, argv)


class BackfleetGroup(click.Group):
    """Turns Backfleet's own errors into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackfleetError as exc:
            _fail(str(exc))


@click.group(cls=BackfleetGroup)
def main() -> None:
    """Backfleet: backups and audit logs for self-hosted platforms."""


@main.command()
def up() -> None:
    """Run the whole fleet on this machine (API, worker, beat, Flower, embedded Redis)."""
    from workers.up import run_up

    sys.exit(run_up())


@main.command()
@click.option("--host", default=None, help="Bind address [BACKFLEET_API_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [BACKFLEET_API_PORT, 8080].")
def api(host: str | None, port: int | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from workers.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        "api.main:app",
        host=host or settings.backfleet_api_host,
        port=port or settings.backfleet_api_port,
        log_level=settings.backfleet_log_level.lower(),
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--queues",
    default=ALL_QUEUES,
    show_default=True,
    help="Comma-separated queues to consume, e.g. backup,restore for a pod of long jobs.",
)
@click.pass_context
def worker(ctx: click.Context, queues: str) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    known = set(ALL_QUEUES.split(","))
    chosen = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(chosen) - known)
    if not chosen or unknown:
        _fail(f"--queues takes names among {ALL_QUEUES}; got {queues!r}")
    _exec_celery("worker", "-Q", ",".join(chosen), "-E", *ctx.args)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Run Celery beat, which emits the scheduled jobs."""
    _exec_celery("beat", *ctx.args)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def flower(ctx: click.Context) -> None:
    """Run Flower, the live dashboard, on 127.0.0.1:5555 unless told otherwise."""
    extra = list(ctx.args)
    if not any(arg.startswith("--address") for arg in extra):
        extra.insert(0, "--address=127.0.0.1")
    _exec_celery("flower", *extra)


@main.command()
def migrate() -> None:
    """Create or upgrade the catalog's tables (DATABASE_URL)."""
    from workers.catalog.db import normalize_url
    from workers.catalog.migrate import upgrade_catalog
    from workers.redact import redact
    from workers.settings import get_settings

    url = get_settings().database_url
    upgrade_catalog(url)
    click.echo(f"catalog migrated: {redact(normalize_url(url))}")


@main.group()
def store() -> None:
    """Manage the object store."""


@store.command("init")
def store_init() -> None:
    """Create the bucket, container or directory the settings name."""
    from workers.settings import get_settings
    from workers.stores import make_store

    target = make_store(get_settings())
    target.init()
    target.check()
    click.echo(f"{target.kind} store ready")


@main.command()
@click.option("--namespace", default=None, help="Namespace [the configured default].")
@click.option("--only-config", is_flag=True, help="Only the services marked `config = true`.")
@click.option(
    "--wait", is_flag=True, help="Wait until it ends, with progress; exit 1 if it failed."
)
@click.option(
    "--dry-run", is_flag=True, help="Stream every source through the pipeline, store nothing."
)
def backup(namespace: str | None, only_config: bool, wait: bool, dry_run: bool) -> None:
    """Request an on-demand backup."""
    from tasks.enqueue import celery_enqueue
    from workers.fleet import current_fleet
    from workers.operations.jobs import request_backup
    from workers.progress import wait_for_backup

    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    if dry_run:
        _dry_run(namespace, only_config)
        return
    row = request_backup(
        fleet,
        namespace=namespace,
        only_config=only_config,
        trigger="cli",
        requested_by="cli",
        enqueue=celery_enqueue,
    )
    click.echo(f"backup {row.timestamp} of namespace {namespace} requested")
    if wait:
        status, error = wait_for_backup(fleet.settings.database_url, namespace, row.timestamp)
        _report(f"backup {row.timestamp}", status, error)


def _dry_run(namespace: str, only_config: bool) -> None:
    from workers.fleet import current_fleet
    from workers.operations.dry_run import dry_run

    click.echo(f"dry run of namespace {namespace}: nothing is stored")
    click.echo(f"{'SERVICE':<20} {'SOURCE':>14} {'STORED':>14} {'SECONDS':>8} {'MB/s':>8}")
    for result in dry_run(current_fleet(), namespace=namespace, only_config=only_config):
        click.echo(
            f"{result.service:<20} {result.source_bytes:>14} {result.stored_bytes:>14} "
            f"{result.seconds:>8.2f} {result.throughput / 1e6:>8.1f}"
        )


@main.command()
@click.argument("timestamp")
@click.option("--namespace", default=None, help="Namespace to restore into [the default].")
@click.option("--source-namespace", default=None, help="Namespace the backup was taken of.")
@click.option("--skip", multiple=True, metavar="SERVICE", help="Leave this service alone.")
@click.option("--wait", is_flag=True, help="Wait until it ends; exit 1 if it failed.")
@click.option(
    "--allow-unconfigured-source",
    is_flag=True,
    help="Restore from a source namespace this fleet does not configure (another cluster's).",
)
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a backup that cannot be authenticated (no catalog record, no valid MAC) "
    "or, with encryption configured, unencrypted artifacts. Recorded on the restore.",
)
def restore(
    timestamp: str,
    namespace: str | None,
    source_namespace: str | None,
    skip: tuple[str, ...],
    wait: bool,
    allow_unconfigured_source: bool,
    allow_unsigned: bool,
) -> None:
    """Restore the backup TIMESTAMP (e.g. 2023-02-02t17-03-15)."""
    from tasks.enqueue import celery_enqueue
    from workers.fleet import current_fleet
    from workers.operations.jobs import request_restore
    from workers.progress import wait_for_restore
    from workers.timestamps import parse_timestamp

    try:
        parse_timestamp(timestamp)
    except ValueError as exc:
        _fail(str(exc))
    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    row = request_restore(
        fleet,
        namespace=namespace,
        timestamp=timestamp,
        source_namespace=source_namespace,
        skip=skip,
        requested_by="cli",
        enqueue=celery_enqueue,
        # The operator's flag, else BACKFLEET_ALLOW_UNCONFIGURED_SOURCE_NAMESPACES.
        allow_unconfigured_source=allow_unconfigured_source or None,
        allow_unsigned=allow_unsigned,
    )
    click.echo(
        f"restore of {row.source_namespace}/{timestamp} into {namespace} requested "
        f"(services: {', '.join(row.services)})"
    )
    if row.error:  # the override's record
        click.echo(f"warning: {row.error}", err=True)
    if wait:
        status, error = wait_for_restore(fleet.settings.database_url, row.id)
        _report(f"restore of {timestamp}", status, error)


@main.command()
def keygen() -> None:
    """Print a new encryption key for BACKUP_ENCRYPTION_KEY (an age X25519 identity)."""
    from workers.transfer import crypto

    key = crypto.generate_key()
    click.echo(key)
    key_id, recipient = crypto.public_details(key)
    click.echo(
        f"# key id {key_id}; public recipient {recipient}\n"
        "# keep the key secret and safe: without it the backups it encrypts cannot be restored",
        err=True,
    )


@main.command()
def check() -> None:
    """Try every piece of the configuration for real and say what is wrong."""
    from workers.fleet import current_fleet
    from workers.monitoring.checks import run_checks

    failed = 0
    for verdict in run_checks(current_fleet()):
        mark = "ok  " if verdict.ok else "FAIL"
        click.echo(f"{mark} {verdict.name}: {verdict.detail}")
        failed += not verdict.ok
    if failed:
        _fail(f"{failed} check(s) failed", code=1)


@store.command("sweep-uploads")
@click.option("--dry-run", is_flag=True, help="Only list what would be aborted.")
def store_sweep_uploads(dry_run: bool) -> None:
    """Abort multipart uploads older than STALE_UPLOAD_AGE that no running backup owns."""
    from workers.fleet import current_fleet
    from workers.operations.sweep import abort_stale_uploads

    result = abort_stale_uploads(current_fleet(), dry_run=dry_run)
    verb = "would abort" if dry_run else "aborted"
    for key in result.aborted:
        click.echo(f"{verb} {key}")
    click.echo(f"{len(result.aborted)} {verb}, {len(result.kept)} kept")


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


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--timestamp", default=None, help="Only this backup (needs --namespace).")
def verify(namespace: str | None, timestamp: str | None) -> None:
    """Read backups back and check them against their manifests; exit 1 on any failure."""
    from workers.fleet import current_fleet
    from workers.operations.verify import verify_backups

    if timestamp and not namespace:
        _fail("--timestamp needs --namespace")
    results = verify_backups(current_fleet(), namespace=namespace, timestamp=timestamp)
    for r in results:
        detail = f": {r.error}" if r.error else f" ({r.artifacts} artifacts, {r.bytes_read} bytes)"
        click.echo(f"{r.status:<8} {r.namespace}/{r.timestamp} [{r.store}]{detail}")
    failed = sum(r.error is not None for r in results)
    click.echo(f"{len(results)} verified, {failed} failed")
    if failed:
        sys.exit(1)


@main.command("test-restore")
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--timestamp", default=None, help="This backup [the newest successful one].")
def test_restore_command(namespace: str | None, timestamp: str | None) -> None:
    """Restore backups into scratch targets, compare with their manifests; exit 1 on failure."""
    from workers.fleet import current_fleet
    from workers.operations.restore_test import run_restore_tests

    if timestamp and not namespace:
        _fail("--timestamp needs --namespace")
    results = run_restore_tests(current_fleet(), namespace=namespace, timestamp=timestamp)
    for r in results:
        detail = f": {r.error}" if r.error else f" (tested: {', '.join(r.tested) or 'none'})"
        skipped = f"; not tested: {', '.join(r.skipped)}" if r.skipped else ""
        click.echo(f"{r.status:<8} {r.namespace}/{r.timestamp}{detail}{skipped}")
    if any(r.error for r in results):
        sys.exit(1)


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--dry-run", is_flag=True, help="Only print what would be deleted, and why.")
def retention(namespace: str | None, dry_run: bool) -> None:
    """Delete the backups the GFS retention does not keep (pins and locks are never deleted)."""
    from workers.fleet import current_fleet
    from workers.operations.retention import apply_retention, apply_secondary_retention

    verb = "would delete" if dry_run else "deleted"
    fleet = current_fleet()
    primary = apply_retention(fleet, namespace=namespace, dry_run=dry_run)
    secondary = apply_secondary_retention(fleet, namespace=namespace, dry_run=dry_run)
    for where, plans in (("", primary), ("secondary store: ", secondary)):
        for plan in plans:
            if plan.skipped:
                click.echo(f"{where}{plan.namespace}: skipped this pass: {plan.skipped}")
                continue
            for stamp, reason in sorted(plan.delete.items()):
                click.echo(f"{where}{verb} {plan.namespace}/{stamp}: {reason}")
            for stamp, error in sorted(plan.failed.items()):
                click.echo(f"{where}could not delete {plan.namespace}/{stamp}: {error}", err=True)
            click.echo(f"{where}{plan.namespace}: {len(plan.keep)} kept, {len(plan.delete)} {verb}")


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
        _fail(f"no backup {timestamp} of namespace {namespace} in the catalog")
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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """The health of every namespace at a glance; exit 1 if any is stale or has open alerts."""
    from workers.fleet import current_fleet
    from workers.monitoring.health import namespace_health

    report = namespace_health(current_fleet())
    if as_json:
        rows = [
            {
                "namespace": h.namespace,
                "lastBackup": h.last_backup,
                "lastStatus": h.last_status,
                "lastSuccess": h.last_success,
                "stale": h.stale,
                "verified": h.last_verified,
                "verifiedAt": h.last_verified_at.isoformat() if h.last_verified_at else None,
                "nextBackup": h.next_backup.isoformat() if h.next_backup else None,
                "openAlerts": h.open_alerts,
            }
            for h in report
        ]
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(
            f"{'NAMESPACE':<16} {'LAST BACKUP':<30} {'LAST SUCCESS':<26} "
            f"{'VERIFIED':<30} {'NEXT BACKUP':<17} ALERTS"
        )
        for h in report:
            last = f"{h.last_backup} {h.last_status}" if h.last_backup else "never"
            success = (h.last_success or "never") + (" STALE" if h.stale else "")
            checked = (
                f"{h.last_verified} {h.last_verified_at:%Y-%m-%d %H:%M}"
                if h.last_verified_at
                else "never"
            )
            upcoming = f"{h.next_backup:%Y-%m-%d %H:%M}" if h.next_backup else "not scheduled"
            click.echo(
                f"{h.namespace:<16} {last:<30} {success:<26} {checked:<30} {upcoming:<17} "
                f"{h.open_alerts}"
            )
    if any(h.stale or h.open_alerts for h in report):
        sys.exit(1)


@main.group()
def audit() -> None:
    """The user-event audit trail: ship, purge, read back."""


@audit.command("flush")
@click.option("--namespace", default=None, help="Only this namespace [every one with events].")
def audit_flush(namespace: str | None) -> None:
    """Ship every recorded user event to the store now (tasks.audit.flush_user_events)."""
    from workers.audit.jobs import flush_from_settings
    from workers.fleet import current_fleet

    result = flush_from_settings(current_fleet(), namespace=namespace)
    click.echo(
        f"shipped {result.events} event(s) in {result.batches} batch(es), "
        f"{len(result.objects)} object(s)"
    )


@audit.command("purge")
def audit_purge() -> None:
    """Delete shipped events older than UEVENTS_RETENTION_DAYS from the catalog."""
    from workers.audit.jobs import purge_from_settings
    from workers.settings import get_settings

    click.echo(f"purged {purge_from_settings(get_settings())} shipped event(s)")


@audit.command("export")
@click.option(
    "--since", required=True, help="UTC date or time, e.g. 2026-11-01 or 2026-11-01T12:00."
)
@click.option("--until", default=None, help="UTC date or time, exclusive [now].")
@click.option("--namespace", default=None, help="Namespace [the configured default].")
def audit_export(since: str, until: str | None, namespace: str | None) -> None:
    """Stream the shipped events created in [since, until) as JSON Lines on stdout."""
    from workers.audit.export import export_events, parse_moment
    from workers.fleet import current_fleet
    from workers.timestamps import utcnow

    try:
        low = parse_moment(since)
        high = parse_moment(until) if until else utcnow()
    except ValueError as exc:
        _fail(str(exc))
    if high <= low:
        _fail("--until must be after --since")
    fleet = current_fleet()
    lines = export_events(
        fleet.store,
        namespace=namespace or fleet.config.default_namespace,
        since=low,
        until=high,
    )
    for line in lines:
        sys.stdout.write(line + "\n")


def _report(what: str, status: str, error: str | None) -> None:
    if status == "Success":
        click.echo(f"{what}: Success")
        return
    _fail(f"{what}: {status}: {error or 'no reason recorded'}", code=1)


if __name__ == "__main__":
    main()
