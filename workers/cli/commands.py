"""`backfleet`: the group, the fleet's processes, backups and restores (admin.py: the rest)."""

import json
import os
import sys
from typing import Any, NoReturn

import click

from workers.cli.exits import FAILED, USAGE, exit_code_of, message_of, outage_of
from workers.errors import BackfleetError
from workers.queues import ALL_QUEUES


def _fail(message: str, code: int = USAGE) -> NoReturn:
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
    """Turns Backfleet's own errors, and a catalog or broker that does not answer, into one
    clear line and a documented exit code (workers/cli/exits.py)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackfleetError as exc:
            _fail(message_of(exc), exit_code_of(exc))
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                raise
            _fail(message_of(outage), exit_code_of(outage))


@click.group(cls=BackfleetGroup)
@click.version_option(package_name="backfleet", message="backfleet %(version)s")
def main() -> None:
    """Backfleet: backups and audit logs for self-hosted platforms."""


@main.command()
def up() -> None:
    """Run the whole fleet on this machine (API, worker, beat, Flower, embedded Redis)."""
    from workers.cli.up import run_up

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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (no bar).")
def backup(
    namespace: str | None, only_config: bool, wait: bool, dry_run: bool, as_json: bool
) -> None:
    """Request an on-demand backup."""
    # Neither SQLAlchemy nor Celery's app: the row is written through the catalog's driver
    # and the task sent with kombu (~0.5 CPU-s less before the worker can start, and
    # beside it on the same cores while it works).
    from tasks.messages import send_task
    from workers.catalog.direct import DirectCatalog
    from workers.catalog.direct_rows import DirectRows
    from workers.fleet import current_fleet
    from workers.operations.pending import request_backup

    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    if dry_run:
        _dry_run(namespace, only_config, as_json)
        return
    rows = DirectRows(DirectCatalog(fleet.settings.database_url))
    row = request_backup(
        fleet,
        rows,
        namespace=namespace,
        only_config=only_config,
        trigger="cli",
        requested_by="cli",
        enqueue=send_task,
    )
    if not as_json:
        click.echo(f"backup {row.timestamp} of namespace {namespace} requested")
    status, error = "Pending", None
    if wait:
        # Imported once the task is queued: the worker starts meanwhile.
        from tasks.enqueue import queue_consumers
        from tasks.results import TaskEnd
        from workers.cli.progress import wait_for_backup

        status, error = wait_for_backup(
            rows,
            namespace,
            row.timestamp,
            waiter=TaskEnd(fleet.settings.results_url),
            consumers=queue_consumers,
            quiet=as_json,
        )
    if as_json:
        answer = {"namespace": namespace, "timestamp": row.timestamp, "status": status}
        click.echo(json.dumps({**answer, "error": error}))
        if status == "Failed":
            sys.exit(FAILED)
    elif wait:
        _report(f"backup {row.timestamp}", status, error)


def _dry_run(namespace: str, only_config: bool, as_json: bool) -> None:
    from workers.fleet import current_fleet
    from workers.operations.dry_run import dry_run

    if as_json:
        from workers.cli.output import to_json

        click.echo(to_json(dry_run(current_fleet(), namespace=namespace, only_config=only_config)))
        return
    click.echo(f"dry run of namespace {namespace}: nothing is stored")
    click.echo(f"{'SERVICE':<20} {'SOURCE':>14} {'STORED':>14} {'SECONDS':>8} {'MB/s':>8}")
    for result in dry_run(current_fleet(), namespace=namespace, only_config=only_config):
        click.echo(
            f"{result.service:<20} {result.source_bytes:>14} {result.stored_bytes:>14} "
            f"{result.seconds:>8.2f} {result.throughput / 1e6:>8.1f}"
        )
        for hook in result.hooks:
            click.echo(f"  hook, not run in a dry run: {hook}")


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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(as_json: bool) -> None:
    """Try every piece of the configuration for real and say what is wrong."""
    from workers.fleet import current_fleet
    from workers.monitoring.checks import run_checks
    from workers.transfer.crypto import describe_keys

    fleet = current_fleet()
    keys = [s for s in (fleet.settings, fleet.secondary_settings) if s is not None]
    first = [("keys", lambda: describe_keys(keys))]
    verdicts = list(run_checks(fleet, first=first, last=_pitr_checks(fleet)))
    if as_json:
        from workers.cli.output import to_json

        click.echo(to_json(verdicts))
    else:
        for verdict in verdicts:
            mark = "ok  " if verdict.ok else "FAIL"
            click.echo(f"{mark} {verdict.name}: {verdict.detail}")
    failed = sum(not verdict.ok for verdict in verdicts)
    if failed:
        _fail(f"{failed} check(s) failed", code=FAILED)


def _pitr_checks(fleet: Any) -> list[tuple[str, Any]]:
    """Each `pitr` service's replication readiness (workers/pitr/readiness.py)."""
    from workers.pitr.readiness import check_replication

    secrets = fleet.secrets()
    return [
        (
            f"{namespace}/{name} pitr",
            lambda ns=namespace, spec=spec: check_replication(ns, spec, secrets),
        )
        for namespace, services in sorted(fleet.config.namespaces.items())
        for name, spec in sorted(services.items())
        if spec.pitr
    ]


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


def _report(what: str, status: str, error: str | None) -> None:
    if status == "Success":
        click.echo(f"{what}: Success")
        return
    _fail(f"{what}: {status}: {error or 'no reason recorded'}", code=FAILED)
