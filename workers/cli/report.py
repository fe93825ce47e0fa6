"""`backfleet report`: the recovery-time evidence of every service, as a table or JSON."""

import json
import sys
from typing import TYPE_CHECKING

import click

from workers.cli.commands import main

if TYPE_CHECKING:
    from workers.monitoring.recovery import RunSummary, ServiceRecovery

COLUMNS = (
    ("NAMESPACE", 12),
    ("SERVICE", 14),
    ("KIND", 10),
    ("RTO", 8),
    ("LAST DRILL", 17),
    ("BACKUP", 20),
    ("TOOK", 9),
    ("COUNTS", 7),
    ("VERDICT", 8),
    ("DUE BY", 26),
)


@main.command()
@click.option("--namespace", default=None, help="Only this namespace [every one].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report(namespace: str | None, as_json: bool) -> None:
    """Each service's recovery-time evidence: its RTO, its last drill (when, which backup,
    how long, counts), met or missed, overdue, and its last user restore; then what each
    namespace stores (`backfleet storage`). Exit 1 if any service missed its RTO, failed
    a drill or is overdue. `--json`: {"recovery": [...], "storage": [...]}."""
    from workers.cli.storage import storage_json, storage_table
    from workers.fleet import current_fleet
    from workers.monitoring.recovery import recovery_report
    from workers.monitoring.storage import storage_report

    fleet = current_fleet()
    if namespace is not None:
        fleet.config.services_of(namespace)  # ConfigError names the known ones
    items = recovery_report(fleet, namespaces=[namespace] if namespace else None)
    stored = storage_report(fleet, namespace=namespace)
    if as_json:
        recovery = [item.as_dict() for item in items]
        click.echo(json.dumps({"recovery": recovery, "storage": storage_json(stored)}, indent=2))
    else:
        click.echo(" ".join(f"{title:<{width}}" for title, width in COLUMNS) + " LAST RESTORE")
        for item in items:
            click.echo(_line(item))
            if item.last_drill is not None and (moment := _moment(item.last_drill)):
                click.echo(f"{'':<12} {'':<14} {moment}")
            if item.failing:
                backups = ", ".join(item.failing)
                click.echo(f"{'':<12} {'':<14} the latest drill of backup {backups} FAILED")
        click.echo("")
        for line in storage_table(stored):
            click.echo(line)
    if any(not item.healthy for item in items):
        sys.exit(1)


def _line(item: "ServiceRecovery") -> str:
    from workers.monitoring.health import span

    head = [item.namespace, item.service, item.kind, span(item.rto)]
    if item.not_drilled is not None:
        cells = [*head, f"not drilled: {item.not_drilled}"]
        return _cells(cells[:4]) + " " + cells[4] + f"; last restore: {_restore(item)}"
    drill = item.last_drill
    if drill is None:
        cells = [*head, "never", "", "", "", "never"]
    else:
        cells = [
            *head,
            f"{drill.finished_at:%Y-%m-%d %H:%M}",
            drill.timestamp,
            _took(drill.seconds),
            {None: "-", True: "ok", False: "DIFFER"}[drill.counts_ok],
            "FAILED" if drill.status != "Success" else "met" if drill.met_rto else "MISSED",
        ]
    due = f"{item.due_by:%Y-%m-%d %H:%M}" if item.due_by else "-"
    cells.append(due + (" OVERDUE" if item.overdue else ""))
    return _cells(cells) + " " + _restore(item)


def _moment(drill: "RunSummary") -> str | None:
    """Where a pitr service's last drill recovered its base backup to, or why not a moment."""
    from workers.timestamps import format_moment

    if drill.target_time is not None:
        replayed = format_moment(drill.replayed_to) if drill.replayed_to else "none"
        return (
            f"drilled to {format_moment(drill.target_time)} (last transaction replayed: {replayed})"
        )
    if drill.target_skipped:
        return f"drilled to its consistent point, not a moment: {drill.target_skipped}"
    return None


def _cells(cells: list[str]) -> str:
    return " ".join(f"{cell:<{width}}" for cell, (_, width) in zip(cells, COLUMNS, strict=False))


def _took(seconds: float) -> str:
    from workers.monitoring.drill_alerts import seconds_text

    return seconds_text(seconds)


def _restore(item: "ServiceRecovery") -> str:
    last: RunSummary | None = item.last_restore
    if last is None:
        return "never"
    verdict = "FAILED" if last.status != "Success" else "met" if last.met_rto else "MISSED"
    return f"{_took(last.seconds)} {verdict} ({last.finished_at:%Y-%m-%d %H:%M})"
