"""`backfleet restore`: a backup by its timestamp (or `latest`), or the `pitr` services to a
moment (`--to-time`, pitr/to_time.py: the fleet picks the backup); `--wait` follows it
with a progress bar, `--json` prints one machine-readable line (exit codes: cli/exits.py)."""

import json
import sys

import click

from workers.cli.commands import _fail, _report, main
from workers.cli.exits import FAILED


def _latest_success(database_url: str, namespace: str) -> str:
    """The timestamp `restore latest` means; exit 1 when the namespace has no such backup."""
    from workers.catalog import queries
    from workers.catalog.db import session_scope

    with session_scope(database_url) as session:
        newest = queries.newest_success(session, namespace=namespace)
        if newest is None:
            _fail(f"namespace {namespace} has no successful backup to restore", FAILED)
        return newest.timestamp


@main.command()
@click.argument("timestamp", required=False)
@click.option(
    "--to-time",
    "to_time",
    default=None,
    metavar="RFC3339",
    help="Restore the `pitr` services to this moment (e.g. 2026-03-02T14:31:59Z) by replaying "
    "their WAL; the other services as at backup time. TIMESTAMP is then optional.",
)
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (no bar).")
def restore(
    timestamp: str | None,
    to_time: str | None,
    namespace: str | None,
    source_namespace: str | None,
    skip: tuple[str, ...],
    wait: bool,
    allow_unconfigured_source: bool,
    allow_unsigned: bool,
    as_json: bool,
) -> None:
    """Restore the backup TIMESTAMP (e.g. 2023-02-02t17-03-15), or `latest`: the source
    namespace's newest successful backup; or, with --to-time, the moment given."""
    from tasks.enqueue import celery_enqueue
    from workers.fleet import current_fleet
    from workers.operations.jobs import request_restore
    from workers.timestamps import format_moment, parse_moment, parse_timestamp

    target = None
    if to_time is not None:
        try:
            target = parse_moment(to_time)
        except ValueError as exc:
            _fail(f"--to-time: {exc}")
    elif timestamp is None:
        _fail("give the backup's TIMESTAMP (or `latest`), or --to-time")
    if timestamp not in (None, "latest"):
        try:
            parse_timestamp(timestamp)
        except ValueError as exc:
            _fail(f"{exc}, or `latest`")
    fleet = current_fleet()
    namespace = namespace or fleet.config.default_namespace
    if timestamp == "latest":
        timestamp = _latest_success(fleet.settings.database_url, source_namespace or namespace)
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
        target_time=target,
    )
    moment = f" to {format_moment(target)}" if target is not None else ""
    timestamp = timestamp or row.timestamp  # the one the fleet picked, for --to-time
    if not as_json:
        click.echo(
            f"restore of {row.source_namespace}/{timestamp}{moment} into {namespace} "
            f"requested (services: {', '.join(row.services)})"
        )
    if row.error:  # the override's record
        click.echo(f"warning: {row.error}", err=True)
    status, error = "Pending", None
    if wait:
        from tasks.enqueue import queue_consumers, wait_for_task
        from workers.cli.progress import wait_for_restore

        url = fleet.settings.database_url
        status, error = wait_for_restore(
            url, row.id, waiter=wait_for_task, consumers=queue_consumers, quiet=as_json
        )
    if as_json:
        answer = {
            "namespace": namespace,
            "sourceNamespace": row.source_namespace,
            "timestamp": timestamp,
            "targetTime": format_moment(target) if target is not None else None,
            "services": list(row.services),
            "status": status,
            "error": error,
        }
        click.echo(json.dumps(answer))
        if status == "Failed":
            sys.exit(FAILED)
    elif wait:
        _report(f"restore of {timestamp}{moment}", status, error)
