"""`backfleet status`: the health of every namespace, each service's freshness, and each
`pitr` service's recoverable window and streaming lag."""

import json
import sys
from typing import TYPE_CHECKING

import click

from workers.cli.commands import _fail, main

if TYPE_CHECKING:
    from workers.monitoring.health import Freshness


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """The health of every namespace, each service's freshness against its own max_age,
    and each `pitr` service's recoverable window and streaming lag, at a glance; exit 1
    if any is stale or has open alerts (`backfleet alerts` lists them)."""
    from workers.cli.pitr_status import as_json as pitr_json
    from workers.cli.pitr_status import line as pitr_line
    from workers.cli.pitr_status import pitr_of
    from workers.fleet import current_fleet
    from workers.monitoring.health import namespace_health

    fleet = current_fleet()
    report = namespace_health(fleet)
    pitr = {h.namespace: pitr_of(fleet, h.namespace) for h in report}
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
                "services": [
                    {
                        "service": s.service,
                        "lastSuccess": s.last_success,
                        "ageSeconds": s.age,
                        "maxAgeSeconds": s.max_age,
                        "stale": s.stale,
                        "dueBy": s.due_by.isoformat() if s.due_by else None,
                    }
                    for s in h.services
                ],
                "pitr": pitr_json(pitr[h.namespace]),
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
            for item in h.services:
                click.echo(f"  {item.service or '':<14} {_service_freshness(item)}")
            for window in pitr[h.namespace]:
                click.echo(f"  {window.service:<14} {pitr_line(window)}")
        if opened := sum(h.open_alerts for h in report):
            click.echo(f"{opened} open alert(s): `backfleet alerts` lists them")
    if any(h.stale or h.open_alerts for h in report):
        sys.exit(1)


def _service_freshness(item: "Freshness") -> str:
    """`2026-…t… (3.0 h old, max_age 2 h) STALE`, or `never (due by …)`: one status line."""
    from workers.monitoring.health import span

    limit = f"max_age {span(item.max_age or 0)}"
    if item.age is None:
        due = f"due by {item.due_by:%Y-%m-%d %H:%M} UTC, " if item.due_by else ""
        line = f"never ({due}{limit})"
    else:
        line = f"{item.last_success} ({item.age / 3600:.1f} h old, {limit})"
    return line + (" STALE" if item.stale else "")


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
